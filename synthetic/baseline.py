"""A trivial street -> satellite matcher by colour histograms: how easy is the world?

DESIGN.md section 4: if matching colour histograms already finds the right satellite tile, the
world is too easy. Report this beside the model's numbers.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

H_BINS, S_BINS, V_BINS = 18, 4, 4


def colour_histogram(path: Path) -> np.ndarray:
    """L1-normalised joint HSV histogram of an image."""
    img = cv2.imread(str(path))
    if img is None:
        raise ValueError(f"{path}: cannot read image")
    hsv = cv2.cvtColor(img, cv2.COLOR_BGR2HSV)
    h = cv2.calcHist([hsv], [0, 1, 2], None, [H_BINS, S_BINS, V_BINS], [0, 180, 0, 256, 0, 256]).ravel()
    return h / max(h.sum(), 1e-9)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def colour_histogram_recall(root: Path, ks: tuple[int, ...] = (1, 5, 10), query: str = "street") -> dict:
    """Rank the test gallery satellite tiles (distractors included) for every test `query` image
    (street, or drone) by histogram intersection; return R@K, R@top1%, AP (University-1652 protocol)
    and chance level."""
    root = Path(root)
    qdir, gdir = root / "test" / f"query_{query}", root / "test" / "gallery_satellite"
    for d in (qdir, gdir):
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: missing; expected a University-1652-layout tree")
    gids = sorted(p.name for p in gdir.iterdir() if p.is_dir())
    gal = np.stack([np.mean([colour_histogram(p) for p in _images(gdir / g)], 0) for g in gids])
    ranks = []
    for qid in sorted(p.name for p in qdir.iterdir() if p.is_dir()):
        if qid not in gids:
            raise ValueError(f"{qdir / qid}: query id has no gallery satellite tile")
        for p in _images(qdir / qid):
            q = colour_histogram(p)
            score = np.minimum(gal, q[None]).sum(1)
            order = np.argsort(-score, kind="stable")
            ranks.append(int(np.nonzero(np.asarray(gids)[order] == qid)[0][0]))
    ranks = np.asarray(ranks)
    out = {"queries": int(len(ranks)), "gallery": len(gids)}
    for k in ks:
        out[f"R@{k}"] = float(np.mean(ranks < k)) if len(ranks) else 0.0
    top1 = max(1, int(round(0.01 * len(gids))))
    out["R@top1%"] = float(np.mean(ranks < top1)) if len(ranks) else 0.0
    # one true match per query; University-1652's trapezoid AP then is 1 at rank 0, else 1 / (2 (rank + 1))
    ap = np.where(ranks == 0, 1.0, 0.5 / (ranks + 1))
    out["AP"] = float(np.mean(ap)) if len(ranks) else 0.0
    out["chance_R@1"] = 1.0 / max(len(gids), 1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root", type=Path)
    ap.add_argument("--query", choices=("street", "drone"), default="street", help="query images (default street)")
    args = ap.parse_args(argv)
    print(json.dumps(colour_histogram_recall(args.root, query=args.query), indent=1))


if __name__ == "__main__":
    main()
