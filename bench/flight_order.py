"""The flight-order check on a built world: which cameras it names, against where they truly are.

For each building of a work dir's reconstruct stage this runs `reconstruction.flight.flight_order` on
the stored model (the model as the stage kept it) and measures every camera's centre against the
synthetic world's true one exactly as quality.json does (`reconstruction.quality.camera_errors`):
the ground truth is for measuring only. A camera more than `--misplaced` (5%) off counts as
misplaced; the check should name exactly those. Buildings the check would change (a camera named,
or a cross-check that kept the incremental model) can be reconstructed again with today's code
(`--rerun`: SfM only, from the images alone, one thread) to compare registered images and camera
errors before and after:

    OMP_NUM_THREADS=1 python bench/flight_order.py work/allflown3 --config assets/configs/allflown.yaml \\
        --rerun --out bench/flight_order_allflown.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pycolmap

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import load_config  # noqa: E402
from reconstruction.flight import flight_order  # noqa: E402
from reconstruction.meta import drone_meta  # noqa: E402
from reconstruction.quality import camera_errors  # noqa: E402
from reconstruction.sfm import list_images, prepare_images, run_sfm  # noqa: E402


def summary_of(rec: pycolmap.Reconstruction, gt: dict, flight: list[str], misplaced: float) -> dict:
    aligned = camera_errors(rec, gt)
    err = aligned[0] if aligned else {}
    order = flight_order(rec, flight)
    bad = sorted(n for n, e in err.items() if e > misplaced)
    return {"registered": int(rec.num_reg_images()), "images": len(flight),
            "camera_error_max": round(max(err.values()), 5) if err else None,
            "camera_error_median": round(float(np.median(list(err.values()))), 5) if err else None,
            "misplaced": bad, "named": order.off, "applies": order.applies, "reason": order.reason}


def rerun(images: Path, cfg, flight: list[str], gt: dict, misplaced: float) -> dict:
    t = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="flight-order-") as tmp:
        scratch = Path(tmp) / "images"
        names, _ = prepare_images(images, scratch)
        res = run_sfm(scratch, names, Path(tmp) / "work", cfg, flight=flight)
    out = summary_of(res.reconstruction, gt, flight, misplaced)
    out |= {"seconds": round(time.perf_counter() - t, 1),
            "mapper_check": res.mapper_check.reason if res.mapper_check else None,
            "flight_order": res.flight_order.to_dict() if res.flight_order else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--config", type=Path, help="the preset the work dir was built with (for --rerun)")
    ap.add_argument("--misplaced", type=float, default=0.05, help="share of the orbit radius (default 0.05)")
    ap.add_argument("--rerun", action="store_true", help="reconstruct the buildings the check would change again")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    root = args.workdir / "data" / "tree"
    cfg = None
    if args.rerun:
        if args.config is None:
            raise SystemExit("--rerun needs --config")
        cfg = dataclasses.replace(load_config(args.config).reconstruct, num_threads=1, flight_order_check=True)
    rows = {}
    for sparse in sorted(args.workdir.glob("reconstruct/*/sparse")):
        bid = sparse.parent.name
        images = root / "train" / "drone" / bid
        gt = drone_meta(root, bid, images).ground_truth
        if not gt or not gt.get("cameras"):
            continue
        flight = [p.name for p in list_images(images)]
        row = summary_of(pycolmap.Reconstruction(sparse), gt, flight, args.misplaced)
        quality = json.loads((sparse.parent / "quality.json").read_text())
        row["mapper_check"] = (quality.get("mapper_check") or {}).get("reason")
        broken = (quality.get("mapper_check") or {}).get("kept") == "incremental"
        if cfg is not None and (row["named"] or broken):
            row["rerun"] = rerun(images, cfg, flight, gt, args.misplaced)
            print(f"{bid}: {row['registered']} registered, max error {row['camera_error_max']:.3f} -> "
                  f"{row['rerun']['registered']}, {row['rerun']['camera_error_max']:.3f}", file=sys.stderr, flush=True)
        rows[bid] = row
    if not rows:
        raise SystemExit(f"{args.workdir}: no reconstructed building with ground truth")
    named = {b: set(r["named"]) for b, r in rows.items()}
    bad = {b: set(r["misplaced"]) for b, r in rows.items()}
    tp = sum(len(named[b] & bad[b]) for b in rows)
    res = {"workdir": str(args.workdir), "misplaced_above": args.misplaced, "buildings": len(rows),
           "cameras": sum(r["registered"] for r in rows.values()),
           "misplaced": sum(len(v) for v in bad.values()), "named": sum(len(v) for v in named.values()),
           "named_and_misplaced": tp, "check_applies": sum(r["applies"] for r in rows.values()),
           "buildings_max_error_above_1pct": sum((r["camera_error_max"] or 0) > 0.01 for r in rows.values()),
           "rows": rows}
    reruns = {b: r["rerun"] for b, r in rows.items() if "rerun" in r}
    if reruns:
        res["rerun"] = {"buildings": sorted(reruns),
                        "registered_before": sum(rows[b]["registered"] for b in reruns),
                        "registered_after": sum(r["registered"] for r in reruns.values()),
                        "misplaced_before": sum(len(rows[b]["misplaced"]) for b in reruns),
                        "misplaced_after": sum(len(r["misplaced"]) for r in reruns.values())}
    text = json.dumps(res, indent=1)
    print(text)
    print(f"\n{res['buildings']} buildings, {res['cameras']} cameras: {res['misplaced']} misplaced (> {args.misplaced:.0%} "
          f"of the orbit radius), {res['named']} named by the flight-order check, {tp} of them misplaced; "
          f"the check applied to {res['check_applies']} buildings")
    print("\n| building | registered | max camera error | misplaced | named | after: registered | max error | misplaced |")
    print("|---|---|---|---|---|---|---|---|")
    for b, r in rows.items():
        if r["misplaced"] or r["named"] or "rerun" in r:
            a = r.get("rerun", {})
            print(f"| {b} | {r['registered']} | {r['camera_error_max']:.3f} | {len(r['misplaced'])} | {len(r['named'])} | "
                  f"{a.get('registered', '')} | {a.get('camera_error_max', '')} | {len(a.get('misplaced', [])) if a else ''} |")
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
