"""Which render views miss the 95% silhouette target, and why: cropped by the framing, or holes in the cloud.

Reads what the render stage measured against the synthetic world's ground truth
(`render/<id>/quality.json`: per scale and view the share of the building's true silhouette covered,
and the share inside the frame). A view below the target is counted as *cropped* when the frame
itself loses more than the target allows (in_frame < target), else as *holes* (the silhouette is in
the frame but the cloud does not cover it). Prints a table per view kind and scale and the worst
buildings; `--out` writes the counts as JSON:

    python bench/render_coverage.py work/demo [--target 0.95] [--out bench/render_coverage_demo.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def read_views(workdir: Path) -> list[dict]:
    """One row per (building, scale, view) with coverage, in_frame and the view's kind."""
    root = workdir / "render"
    if not root.is_dir():
        raise SystemExit(f"{root}: no render stage here")
    rows = []
    for q in sorted(root.glob("*/quality.json")):
        sil = json.loads(q.read_text()).get("silhouette_coverage") or {}
        for scale, s in (sil.get("scales") or {}).items():
            for name, v in s["views"].items():
                if v.get("coverage") is None:
                    continue
                rows.append({"building": q.parent.name, "scale": int(scale), "view": name, "kind": v.get("view", "?"),
                             "coverage": v["coverage"], "in_frame": v["in_frame"], "fill": v["fill"]})
    if not rows:
        raise SystemExit(f"{root}: no silhouette coverage measured (a world without ground truth?)")
    return rows


def classify(rows: list[dict], target: float) -> dict:
    out: dict = {"target": target, "views": len(rows), "below": 0, "cropped": 0, "holes": 0,
                 "by_kind_scale": {}, "worst_buildings": []}
    cells: dict = defaultdict(Counter)
    per_building: dict = defaultdict(list)
    for r in rows:
        key = f"{r['kind']}/scale{r['scale']}"
        cells[key]["views"] += 1
        if r["coverage"] >= target:
            continue
        why = "cropped" if r["in_frame"] < target else "holes"
        out["below"] += 1
        out[why] += 1
        cells[key][why] += 1
        per_building[r["building"]].append(r["coverage"])
    out["by_kind_scale"] = {k: dict(v) for k, v in sorted(cells.items())}
    worst = sorted(per_building.items(), key=lambda kv: -len(kv[1]))[:10]
    out["worst_buildings"] = [{"building": b, "views_below": len(c), "min_coverage": min(c)} for b, c in worst]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--target", type=float, default=0.95)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    res = classify(read_views(args.workdir), args.target)
    res["workdir"] = str(args.workdir)
    print(json.dumps(res, indent=1))
    print(f"\n{res['below']} of {res['views']} views below {args.target:.0%} of the true silhouette: "
          f"{res['cropped']} cropped by the framing, {res['holes']} with holes in the cloud")
    print("\n| view kind / scale | views | cropped | holes |\n|---|---|---|---|")
    for k, c in res["by_kind_scale"].items():
        print(f"| {k} | {c['views']} | {c.get('cropped', 0)} | {c.get('holes', 0)} |")
    if args.out:
        args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
