"""Two or more reconstruct caches of the same world, paired over its buildings.

Each work dir's `reconstruct/<id>/item.json` holds what the stage measured against the synthetic
world's ground truth (measurement only): dense accuracy / completeness / facades at tau = 1% of the
building's size and the camera error (median, % of the orbit radius). This prints, per building and as
medians, each cache's figures, and for each cache after the first the paired difference to the first
(mean over buildings, 95% bootstrap interval over buildings). A cache that re-runs the first's
config tells how repeatable a figure is, which is the noise any other difference must clear:

    python bench/compare_reconstructions.py work/val600 work/val600r work/val600g \\
        --names incremental incremental-again global+5src --out bench/reconstruct_mapper_val600.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retrieval.metrics import bootstrap_ci  # noqa: E402

FIGURES = {"acc": "dense_accuracy_1pct", "compl": "dense_completeness_1pct",
           "facades": "dense_completeness_facades_1pct", "cam_err_pct": "camera_error_rel_median",
           "cam_err_max": "camera_error_rel_max", "registered": "registered", "seconds": "seconds"}
MISPLACED = 0.1  # a camera further than this share of the orbit radius from its true place


def read_cache(workdir: Path) -> dict[str, dict[str, float]]:
    """Building id -> figures of a work dir's reconstruct stage (buildings that failed are left out)."""
    out = {}
    root = workdir / "reconstruct"
    if not root.is_dir():
        raise SystemExit(f"{root}: no reconstruct stage here")
    for item in sorted(root.glob("*/item.json")):
        d = json.loads(item.read_text())
        if d.get("status") != "ok" or d.get(FIGURES["acc"]) is None:
            continue
        row = {k: float(d[v]) for k, v in FIGURES.items() if d.get(v) is not None}
        if "cam_err_pct" in row:
            row["cam_err_pct"] *= 100.0
        quality = json.loads((item.parent / "quality.json").read_text()) if (item.parent / "quality.json").is_file() else {}
        row["mapper"] = quality.get("mapper", "?")
        out[item.parent.name] = row
    return out


def compare(caches: dict[str, dict[str, dict[str, float]]]) -> dict:
    names = list(caches)
    common = sorted(set.intersection(*(set(c) for c in caches.values())))
    if not common:
        raise SystemExit("the caches share no reconstructed building")
    ref = names[0]
    out = {"buildings": common, "per_building": {b: {n: caches[n][b] for n in names} for b in common},
           "median": {n: {k: statistics.median(caches[n][b][k] for b in common) for k in FIGURES
                          if all(k in caches[n][b] for b in common)} for n in names}, "vs_" + ref: {},
           # buildings whose worst camera is misplaced (ground truth, measuring only), and images kept
           "misplaced": {n: sorted(b for b in common if caches[n][b].get("cam_err_max", 0) > MISPLACED) for n in names},
           "registered": {n: int(sum(caches[n][b].get("registered", 0) for b in common)) for n in names},
           "mapper_kept": {n: {m: sum(caches[n][b]["mapper"] == m for b in common)
                               for m in sorted({caches[n][b]["mapper"] for b in common})} for n in names}}
    for n in names[1:]:
        out["vs_" + ref][n] = {}
        for k in ("acc", "compl", "facades", "cam_err_pct"):
            diff = np.array([caches[n][b][k] - caches[ref][b][k] for b in common])
            lo, hi = bootstrap_ci(diff)
            out["vs_" + ref][n][k] = {"mean": float(diff.mean()), "ci95": [float(lo), float(hi)]}
    return out


def format_table(res: dict, names: list[str]) -> str:
    ref = names[0]
    lines = ["| building | " + " | ".join(f"{n} acc / compl / facades / cam err %" for n in names) + " |",
             "|---|" + "---|" * len(names)]
    rows = list(res["per_building"].items()) + [("**median**", res["median"])]
    for b, per in rows:
        cells = [f"{per[n]['acc']:.2f} / {per[n]['compl']:.2f} / {per[n]['facades']:.2f} / {per[n]['cam_err_pct']:.2f}"
                 for n in names]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "| cache | images kept | buildings with a camera misplaced by > "
              f"{MISPLACED:.0%} of the orbit radius | model kept |", "|---|---|---|---|"]
    lines += [f"| {n} | {res['registered'][n]} | {len(res['misplaced'][n])} ({', '.join(res['misplaced'][n])}) | "
              + ", ".join(f"{m} {c}" for m, c in res["mapper_kept"][n].items()) + " |" for n in names]
    lines += ["", f"paired over {len(res['buildings'])} buildings, minus {ref} (mean [95% bootstrap interval]):", "",
              "| cache | Δacc | Δcompl | Δfacades | Δcam err % |", "|---|---|---|---|---|"]
    for n, d in res["vs_" + ref].items():
        lines.append(f"| {n} | " + " | ".join(f"{d[k]['mean']:+.3f} [{d[k]['ci95'][0]:+.3f}, {d[k]['ci95'][1]:+.3f}]"
                                              for k in ("acc", "compl", "facades", "cam_err_pct")) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdirs", type=Path, nargs="+", help="work dirs of one world; the first is the reference")
    ap.add_argument("--names", nargs="+", help="a label per work dir (default: the dir names)")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args(argv)
    names = args.names or [w.name for w in args.workdirs]
    if len(names) != len(args.workdirs) or len(set(names)) != len(names):
        raise SystemExit("--names: one distinct label per work dir")
    if len(names) < 2:
        raise SystemExit("give at least two work dirs to compare")
    res = compare({n: read_cache(w) for n, w in zip(names, args.workdirs)})
    res["workdirs"] = {n: str(w) for n, w in zip(names, args.workdirs)}
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(json.dumps(res["median"]))
    print(format_table(res, names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
