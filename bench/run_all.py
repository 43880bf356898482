"""Run every benchmark in bench/, collect their JSON into bench/results.json and print one table.

Each `bench/bench_*.py` is run as its own process (so one crash does not stop the others) and
prints a JSON object; its flat numeric fields become the rows of the table.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def first_json(text: str) -> dict | None:
    dec = json.JSONDecoder()
    for i, ch in enumerate(text):
        if ch == "{":
            try:
                obj, _ = dec.raw_decode(text[i:])
                return obj
            except json.JSONDecodeError:
                continue
    return None


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = v
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="bench names to run (e.g. splat synth)")
    ap.add_argument("--out", type=Path, default=HERE / "results.json")
    args = ap.parse_args(argv)
    results: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M"), "benchmarks": {}}
    if args.out.exists():
        old = json.loads(args.out.read_text())
        results["benchmarks"].update(old.get("benchmarks", {}))
    for script in sorted(HERE.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        print(f"== {name}", flush=True)
        t0 = time.time()
        proc = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, capture_output=True, text=True)
        sys.stdout.write(proc.stdout[-3000:])
        data = first_json(proc.stdout)
        if proc.returncode != 0 or data is None:
            sys.stderr.write(proc.stderr[-3000:])
            results["benchmarks"][name] = {"error": (proc.stderr.strip().splitlines() or ["no JSON printed"])[-1]}
        else:
            results["benchmarks"][name] = data
        results["benchmarks"][name]["wall_s"] = round(time.time() - t0, 1)
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n| benchmark | figure | value |\n|---|---|---|")
    for name, data in results["benchmarks"].items():
        for k, v in flatten(data).items():
            print(f"| {name} | {k} | {v:.4g} |" if isinstance(v, float) else f"| {name} | {k} | {v} |")
    print(f"\nwritten {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
