"""Benchmark: a fully cached re-run of the whole pipeline (target < 5 s), via the CLI as a user runs it.

Builds the tiny world's work dir once (bench/out/tiny, reused between runs), then times
`skylink run` with nothing changed, median over repeats.

    python bench/bench_pipeline.py                      # the cached re-run
    python bench/bench_pipeline.py --stages work/demo   # where a finished run's time went

`--stages` reads the stage manifests of a finished work dir (nothing is run): seconds per stage,
the per-unit costs a time budget is built from (seconds per generated image, per reconstructed
building, training images/s) and the total against the 15-minute `make demo` budget.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "assets" / "configs" / "tiny.yaml"
WORKDIR = REPO / "bench" / "out" / "tiny"


def skylink(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(repeats: int = 5) -> dict:
    first = skylink("run", "--config", str(CONFIG), "--workdir", str(WORKDIR))
    times = [skylink("run", "--config", str(CONFIG), "--workdir", str(WORKDIR)) for _ in range(repeats)]
    return {
        "config": "tiny",
        "first_run_s": round(first, 2),
        "cached_rerun_s_median": round(statistics.median(times), 3),
        "cached_rerun_s_max": round(max(times), 3),
        "repeats": repeats,
        "target_s": 5.0,
    }


STAGES = ("data", "reconstruct", "render", "enhance", "train", "index", "evaluate", "report")
DEMO_BUDGET_S = 15 * 60


def _per_unit(stage: str, m: dict, workdir: Path) -> str:
    """The stage's cost per unit of work, from what its manifest (and train's history) records."""
    s, summary = m["timings"]["seconds"], m.get("summary") or {}
    if stage == "data" and summary.get("images"):
        return f"{1e3 * s / summary['images']:.0f} ms per dataset file ({summary['images']} files)"
    if stage in ("reconstruct", "render", "enhance") and m.get("counts", {}).get("ok"):
        n = m["counts"]["ok"]
        return f"{s / n:.1f} s per building ({n} buildings)"
    if stage == "train":
        hist = workdir / "train" / "history.json"
        if hist.is_file():
            epochs = json.loads(hist.read_text())
            epochs = epochs.get("epochs", epochs) if isinstance(epochs, dict) else epochs
            rates = [e["images_per_s"] for e in epochs if isinstance(e, dict) and "images_per_s" in e]
            if rates:
                return f"{statistics.median(rates):.1f} images/s (median of {len(rates)} epochs)"
    return ""


def stage_times(workdir: Path) -> dict:
    """Seconds per stage of a finished work dir, from each stage's manifest.json."""
    rows = []
    for stage in STAGES:
        path = workdir / stage / "manifest.json"
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        rows.append({"stage": stage, "seconds": m["timings"]["seconds"], "per_unit": _per_unit(stage, m, workdir)})
    total = sum(r["seconds"] for r in rows)
    return {"workdir": str(workdir), "stages": rows, "total_s": round(total, 1), "budget_s": DEMO_BUDGET_S}


def print_stage_times(res: dict) -> None:
    print("| stage | seconds | per unit |\n|---|---|---|")
    for r in res["stages"]:
        print(f"| {r['stage']} | {r['seconds']:.1f} | {r['per_unit']} |")
    print(f"| total | {res['total_s']:.1f} | budget {res['budget_s']} s |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stages", type=Path, metavar="WORKDIR", help="report a finished work dir's stage times")
    args = ap.parse_args()
    if args.stages:
        if not args.stages.is_dir():
            raise SystemExit(f"{args.stages}: work dir not found")
        res = stage_times(args.stages)
        print(json.dumps(res, indent=2))
        print_stage_times(res)
    else:
        res = main()
        print(json.dumps(res, indent=2))
        print(f"\n| figure | value |\n|---|---|\n| cached re-run (median of {res['repeats']}) | {res['cached_rerun_s_median']} s |")
