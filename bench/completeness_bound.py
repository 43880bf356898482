"""How complete can a building's dense cloud be from its own flight? The visibility bound beside the measure.

Completeness (quality.json, `ground_truth.geometry.dense.completeness`) is the share of samples on the
building's true surface within tau of the cloud. Multi-view stereo can only place a point where at
least two images see the surface, so the share of those samples that two or more drone cameras see
(unoccluded, in the frame; ground-truth cameras and mesh, measuring only) bounds it from above, up to
tau: a sample no camera sees still counts as complete when a seen surface lies within tau of it, so
the bound is given both strictly (`seen`) and dilated by tau (`seen_tau`: the share of samples within
tau of a seen one). The same 20,000 samples as quality.json (same seed), for all faces and for the
facades alone, and per altitude group (each render scale shows the cloud its own group's images
made, so a scale's bound counts that group's cameras only):

    python bench/completeness_bound.py work/demo [--min-views 2] [--max-angle 90] \\
        [--out bench/completeness_bound_demo.json]

A building whose completeness sits near its bound is limited by what its flight sees, not by the
stereo; the gap between them is what a better MVS could still gain.
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

from reconstruction.meta import drone_meta  # noqa: E402
from reconstruction.multiscale import default_groups  # noqa: E402
from reconstruction.quality import SceneMesh, building_samples  # noqa: E402

TAU = "0.01"


def seen_by(samples: np.ndarray, normals: np.ndarray, cameras: dict, intrinsics: dict, scene: SceneMesh,
            max_angle: float = 90.0) -> dict[str, np.ndarray]:
    """Per camera, which samples it sees: in front, inside the frame, nothing on the ray before it, and
    the surface turned less than `max_angle` degrees away from the ray (a 7x7 window cannot match a
    surface seen edge-on)."""
    import open3d as o3d

    scene.distances(samples[:1])  # builds the ray-casting structure
    min_cos = np.cos(np.radians(max_angle))
    out = {}
    for name, cam in cameras.items():
        P = np.asarray(cam["cam_from_world"], dtype=np.float64).reshape(3, 4)
        K = intrinsics[name]
        Xc = samples @ P[:, :3].T + P[:, 3]
        uv = Xc[:, :2] / np.maximum(Xc[:, 2:3], 1e-9) @ np.diag(K[[0, 1], [0, 1]]) + K[:2, 2]
        inside = ((Xc[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] <= 2 * K[0, 2])
                  & (uv[:, 1] >= 0) & (uv[:, 1] <= 2 * K[1, 2]))
        C = -P[:, :3].T @ P[:, 3]
        ray = samples - C
        t = scene._scene.cast_rays(o3d.core.Tensor(  # the sample itself is at t = 1
            np.concatenate([np.broadcast_to(C, ray.shape), ray], 1).astype(np.float32)))["t_hit"].numpy()
        cos = np.abs(np.sum(normals * ray, axis=1)) / (np.linalg.norm(ray, axis=1) + 1e-12)
        out[name] = inside & (t >= 1 - 0.002) & (cos >= min_cos)
    return out


def seen_counts(samples: np.ndarray, normals: np.ndarray, cameras: dict, intrinsics: dict, scene: SceneMesh,
                max_angle: float = 90.0) -> np.ndarray:
    """How many of the cameras see each sample (`seen_by`)."""
    return np.sum(list(seen_by(samples, normals, cameras, intrinsics, scene, max_angle).values()), axis=0)


def building_bound(workdir: Path, bid: str, scene: SceneMesh, min_views: int, max_angle: float,
                   n_scales: int = 3) -> dict | None:
    from scipy.spatial import cKDTree

    q = json.loads((workdir / "reconstruct" / bid / "quality.json").read_text())
    dense = ((q.get("ground_truth") or {}).get("geometry") or {}).get("dense")
    if not dense:
        return None
    root = workdir / "data" / "tree"
    meta = drone_meta(root, bid, root / "train" / "drone" / bid)
    gt = meta.ground_truth
    samples, normals, facade = building_samples(scene, int(gt["building_index"]), dense["surface_samples"])
    tau = float(TAU) * float(gt["building_size"])
    seen = seen_by(samples, normals, gt["cameras"], meta.intrinsics, scene, max_angle)  # rays cast once

    def bound(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        ok = np.sum([seen[n] for n in names], axis=0) >= min_views
        near = np.zeros(len(samples), bool)
        if ok.any():
            d, _ = cKDTree(samples[ok]).query(samples, k=1)
            near = d <= tau
        return ok, near

    ok, near = bound(list(seen))
    # each render scale shows the cloud of one altitude group, fused from that group's images alone
    groups = default_groups(sorted(seen), n_scales)
    per_scale = {}
    for k in range(1, n_scales + 1):
        _, near_k = bound([n for n in seen if groups[n] == k])
        per_scale[str(k)] = {"seen_tau": round(float(near_k.mean()), 4),
                             "seen_tau_facades": round(float(near_k[facade].mean()), 4)}
    return {"completeness": dense["completeness"][TAU], "completeness_facades": dense["completeness_facades"][TAU],
            "accuracy": dense["accuracy"][TAU],
            "seen": round(float(ok.mean()), 4), "seen_facades": round(float(ok[facade].mean()), 4),
            "seen_tau": round(float(near.mean()), 4), "seen_tau_facades": round(float(near[facade].mean()), 4),
            "per_scale": per_scale, "registered": q.get("registered"), "images": q.get("total")}


def median_row(rows: dict[str, dict]) -> dict:
    """The median building, in the shape of one building's row, and how many fall below 97%."""
    keys = ("completeness", "seen", "seen_tau", "completeness_facades", "seen_facades", "seen_tau_facades")
    med: dict = {k: round(statistics.median(r[k] for r in rows.values()), 4) for k in keys}
    scales = next(iter(rows.values()))["per_scale"]
    med["per_scale"] = {k: {m: round(statistics.median(r["per_scale"][k][m] for r in rows.values()), 4) for m in v}
                        for k, v in scales.items()}
    med["buildings_with_bound_below_0.97"] = sum(r["seen_tau"] < 0.97 for r in rows.values())
    med["buildings_with_facade_bound_below_0.97"] = sum(r["seen_tau_facades"] < 0.97 for r in rows.values())
    return med


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workdir", type=Path)
    ap.add_argument("--min-views", type=int, default=2)
    ap.add_argument("--max-angle", type=float, default=90.0,
                    help="degrees between the surface normal and the ray beyond which a camera does not count")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    mesh = args.workdir / "data" / "tree" / "meta" / "scene.ply"
    if not mesh.is_file():
        raise SystemExit(f"{mesh}: no ground-truth scene mesh (not a synthetic world?)")
    scene = SceneMesh(mesh)
    rows = {}
    for q in sorted((args.workdir / "reconstruct").glob("*/quality.json")):
        r = building_bound(args.workdir, q.parent.name, scene, args.min_views, args.max_angle)
        if r:
            rows[q.parent.name] = r
            print(f"{q.parent.name}: completeness {r['completeness']:.3f} (bound {r['seen_tau']:.3f}), "
                  f"facades {r['completeness_facades']:.3f} (bound {r['seen_tau_facades']:.3f})", file=sys.stderr)
    if not rows:
        raise SystemExit(f"{args.workdir / 'reconstruct'}: no dense cloud measured against the ground truth")
    med = median_row(rows)
    doc = {"workdir": str(args.workdir), "tau": TAU, "min_views": args.min_views, "max_angle": args.max_angle,
           "median": med, "buildings": rows}
    print(json.dumps(doc, indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"\n| building | completeness | bound (seen by >= {args.min_views}, within tau) | strict | facades "
          "| facade bound | strict | facade bound per scale (its group's images only) |")
    print("|---|---|---|---|---|---|---|---|")
    for bid, r in list(rows.items()) + [("median", med)]:
        ps = " / ".join(f"{v['seen_tau_facades']:.3f}" for v in r["per_scale"].values())
        print(f"| {bid} | {r['completeness']:.3f} | {r['seen_tau']:.3f} | {r['seen']:.3f} | "
              f"{r['completeness_facades']:.3f} | {r['seen_tau_facades']:.3f} | {r['seen_facades']:.3f} | {ps} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
