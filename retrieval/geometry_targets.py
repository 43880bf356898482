"""Geometric targets from the 3D cache: rotation-invariant shape figures of a building's DSM that the
street and satellite descriptors learn to predict (train.w_geometry).

A DSM lies on the nadir grid of the render stage (`scale{k}/dsm.npy`, height above ground in the
scene's unit, 0 = no data; `cameras.json` gives its ground sample distance). Without GPS the scene's
north is unknown, and satellite tiles are rotated in training, so only figures that do not change when
the DSM turns are targets: how tall, how large, how full and how elongated the building is.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger("skylink")

NAMES = ("log_top", "log_footprint", "fill", "upper_share", "elongation")


def dsm_figures(dsm: np.ndarray, gsd: float) -> np.ndarray:
    """The figures of one DSM (H x W heights, 0 = no data) at `gsd` units per pixel, in NAMES' order:
    log of the top height (95th percentile), log of the footprint area (cells above a third of the top),
    mean footprint height / top, share of the footprint above 70% of the top, and the footprint's minor /
    major axis ratio (second moments)."""
    h = np.nan_to_num(np.asarray(dsm, np.float64), nan=0.0)
    top = float(np.percentile(h[h > 0], 95)) if (h > 0).any() else 0.0
    if top <= 0:
        return np.array([np.log(1e-3), np.log(1e-6), 0.0, 0.0, 0.0], np.float32)
    foot = h > top / 3
    area = float(foot.sum()) * gsd * gsd
    ys, xs = np.nonzero(foot)
    elongation = 0.0
    if len(xs) >= 3:
        ev = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
        elongation = float(np.sqrt(max(ev[0], 0.0) / max(ev[1], 1e-12)))
    return np.array([np.log(top), np.log(max(area, 1e-6)), float(h[foot].mean() / top),
                     float((h[foot] > 0.7 * top).mean()), elongation], np.float32)


def read_figures(render_dir: Path, scale: int) -> np.ndarray | None:
    """A building's figures from its render folder, or None when that scale has no DSM."""
    sdir = Path(render_dir) / f"scale{scale}"
    path = sdir / "dsm.npy"
    if not path.is_file():
        return None
    try:
        dsm = np.load(path).astype(np.float32)
        gsd = float(json.loads((sdir / "cameras.json").read_text())["dsm"]["gsd"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{sdir}: cannot read the DSM and its grid ({e})") from None
    if dsm.ndim != 2:
        raise ValueError(f"{path}: DSM of shape {dsm.shape} is not H x W")
    return dsm_figures(dsm, gsd)


def geometry_targets(renders: Path, ids: list[str], scale: int) -> dict[str, np.ndarray]:
    """Building id -> its figures standardised over the given buildings (mean 0, std 1 per figure), for
    the buildings whose renders have a DSM at `scale`."""
    raw = {b: f for b in ids if (f := read_figures(Path(renders) / b, scale)) is not None}
    if len(raw) < 2:
        logger.warning("%s: %d building(s) with a DSM at scale %d: no geometric targets", renders, len(raw), scale)
        return {}
    stack = np.stack(list(raw.values()))
    mean, std = stack.mean(0), stack.std(0)
    std[std < 1e-6] = 1.0
    return {b: ((f - mean) / std).astype(np.float32) for b, f in raw.items()}
