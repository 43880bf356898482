"""Figure of a building's render views with the true silhouette outlined (red) and its coverage per view.

    .venv/bin/python bench/renders_figure.py WORKDIR BUILDING[,BUILDING...] OUT.png [--before OLD_RENDER] [--scale 1]

Rows per building: its views in `--before` (an older render dir, e.g. a copy of WORKDIR/render made
before a change), then in WORKDIR/render. Ground truth is read from WORKDIR/data/tree/meta.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from reconstruction.framing import centres_and_axes, registered_cameras
from reconstruction.meta import drone_meta
from reconstruction.silhouette import building_triangles, silhouettes, to_reconstruction_frame, view_coverage
from reconstruction.views import ViewCamera


def building_in_render_frame(work: Path, building: str) -> np.ndarray:
    tree = work / "data" / "tree"
    gt = drone_meta(tree, building, tree / "train" / "drone" / building).ground_truth
    rec = {c["name"]: c for c in registered_cameras(work / "reconstruct" / building)}
    names = sorted(n for n in rec if n in gt["cameras"])
    recon_c, _ = centres_and_axes([rec[n] for n in names])
    true_c, _ = centres_and_axes([{"cam_from_world": gt["cameras"][n]["cam_from_world"]} for n in names])
    tris = building_triangles(Path(gt["mesh"]), int(gt["building_index"]))
    return to_reconstruction_frame(tris.reshape(-1, 3), recon_c, true_c).reshape(-1, 3, 3)


def row(render_dir: Path, scale: int, tris: np.ndarray, label: str, tile: int) -> np.ndarray:
    sd = render_dir / f"scale{scale}"
    views = json.loads((sd / "cameras.json").read_text())["views"]
    cams = [ViewCamera.from_json(n, d) for n, d in sorted(views.items())]
    pad = cams[0].width
    tiles = []
    for cam, sil in zip(cams, silhouettes(tris, cams, pad)):
        img = cv2.imread(str(sd / f"{cam.name}_color.png"))
        cov = view_coverage(sil, np.load(sd / f"{cam.name}_depth.npy").astype(np.float32), pad)
        inner = sil[pad:pad + cam.height, pad:pad + cam.width].astype(np.uint8)
        img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_NEAREST)
        inner = cv2.resize(inner, (tile, tile), interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(inner, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(img, contours, -1, (0, 0, 255), 1)
        text = f"{cam.kind} cov {100 * (cov['coverage'] or 0):.0f}% fill {100 * cov['fill']:.0f}%"
        cv2.putText(img, text, (3, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(cv2.copyMakeBorder(img, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=(255, 255, 255)))
    strip = np.hstack(tiles)
    head = np.full((22, strip.shape[1], 3), 255, np.uint8)
    cv2.putText(head, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return np.vstack([head, strip])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workdir", type=Path)
    ap.add_argument("building", help="one id or several, comma-separated")
    ap.add_argument("out", type=Path)
    ap.add_argument("--before", type=Path, default=None, help="an older render dir (holding <id>/scale{k})")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--tile", type=int, default=160)
    args = ap.parse_args()
    rows = []
    for b in args.building.split(","):
        tris = building_in_render_frame(args.workdir, b)
        if args.before is not None:
            rows.append(row(args.before / b, args.scale, tris, f"building {b}, scale {args.scale}: before", args.tile))
        rows.append(row(args.workdir / "render" / b, args.scale, tris,
                        f"building {b}, scale {args.scale}: framed on the orbit axis", args.tile))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), np.vstack(rows))


if __name__ == "__main__":
    main()
