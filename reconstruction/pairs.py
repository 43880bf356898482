"""Image pairs to match on a drone orbit: capture-order neighbours plus retrieved loop closures.

COLMAP's own loop detection needs a vocabulary-tree file that cannot be downloaded here, so loop
closures are found with a small VLAD retrieval over the scene's own SIFT descriptors: the spiral
passes over the same facade once per turn, and those views look alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap


def sequential_pairs(names: list[str], overlap: int) -> set[tuple[str, str]]:
    """Each image with the next `overlap` images in capture (sorted name) order."""
    return {(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, min(len(names), i + 1 + overlap))}


def _kmeans(x: np.ndarray, k: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    centres = x[rng.choice(len(x), size=k, replace=False)]
    for _ in range(iters):
        assign = _nearest(x, centres)
        for c in range(k):
            members = x[assign == c]
            if len(members):
                centres[c] = members.mean(axis=0)
    return centres


def _nearest(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    d = (x * x).sum(1)[:, None] - 2 * x @ centres.T + (centres * centres).sum(1)[None]
    return d.argmin(axis=1)


def vlad_descriptors(descriptors: list[np.ndarray], k: int = 32, seed: int = 0) -> np.ndarray:
    """One L2-normalised VLAD vector per image from its local descriptors (codebook fit on the scene)."""
    rng = np.random.default_rng(seed)
    feats = [np.sqrt(d.astype(np.float32) / 512.0) for d in descriptors]  # RootSIFT-like for uint8 SIFT
    sample = np.concatenate([f[rng.choice(len(f), size=min(len(f), 500), replace=False)] for f in feats if len(f)])
    k = max(1, min(k, len(sample) // 4))
    centres = _kmeans(sample, k, iters=8, rng=rng)
    out = np.zeros((len(feats), k * sample.shape[1]), np.float32)
    for i, f in enumerate(feats):
        if not len(f):
            continue
        assign = _nearest(f, centres)
        v = np.zeros_like(centres)
        np.add.at(v, assign, f - centres[assign])
        v = np.sign(v) * np.sqrt(np.abs(v))  # power normalisation against bursty repeated texture
        v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-12  # intra-normalisation
        out[i] = v.ravel()
    out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-12
    return out


def retrieval_pairs(names: list[str], global_desc: np.ndarray, k: int, min_index_gap: int) -> set[tuple[str, str]]:
    """Each image with its `k` most similar images at least `min_index_gap` apart in capture order."""
    if k <= 0 or len(names) < 3:
        return set()
    sim = global_desc @ global_desc.T
    idx = np.arange(len(names))
    sim[np.abs(idx[:, None] - idx[None]) < max(1, min_index_gap)] = -np.inf
    pairs = set()
    for i in range(len(names)):
        for j in np.argsort(-sim[i])[:k]:
            if np.isfinite(sim[i, j]):
                pairs.add((names[min(i, j)], names[max(i, j)]))
    return pairs


def database_descriptors(database: Path, names: list[str]) -> list[np.ndarray]:
    """The SIFT descriptors of the named images, in that order."""
    db = pycolmap.Database.open(database)
    try:
        by_name = {im.name: im.image_id for im in db.read_all_images()}
        return [np.asarray(db.read_descriptors(by_name[n]).data) if n in by_name else np.zeros((0, 128), np.uint8) for n in names]
    finally:
        db.close()


def write_pairs(path: Path, pairs: set[tuple[str, str]]) -> Path:
    path.write_text("".join(f"{a} {b}\n" for a, b in sorted(pairs)))
    return path
