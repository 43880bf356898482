"""Contact sheets of a generated world (`--preview`): one PNG per building and one overview."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from .camera import look_at, ortho
from .config import SynthConfig
from .generate import drone_config
from .layout import Layout
from .render import Light, Renderer

TILE = 256
SPLIT_COLOURS = {"train": (60, 200, 60), "test": (40, 160, 255), "distractor": (60, 60, 230)}  # BGR


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.rectangle(img, (0, 0), (img.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(img, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _tile(path: Path, text: str) -> np.ndarray:
    img = cv2.imread(str(path)) if path.is_file() else None   # unflown buildings have no drone images
    if img is None:
        img = np.full((TILE, TILE, 3), 40, np.uint8)
        text += " (none)"
    return _label(cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA), text)


def _view_dir(root: Path, split: str, role: str, view: str, bid: str) -> Path:
    if split == "train":
        return root / "train" / view / bid
    if role == "distractor" or view == "satellite":
        return root / "test" / ("gallery_satellite" if role == "distractor" else "query_satellite") / bid
    return root / "test" / f"query_{view}" / bid


def write_previews(root: Path, layout: Layout, renderer: Renderer, cfg: SynthConfig) -> list[Path]:
    out = root / "meta" / "preview"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for b in layout.buildings:
        per = drone_config(cfg, b).drone_images // cfg.drone_groups
        role = "distractor" if b.role == "distractor" else b.split
        tiles = [_tile(_view_dir(root, b.split, b.role, "satellite", b.id) / f"{b.id}.jpg", f"{b.id} {role} satellite")]
        if b.role != "distractor":
            ddir = _view_dir(root, b.split, b.role, "drone", b.id)
            for g in range(cfg.drone_groups):
                tiles.append(_tile(ddir / f"image-{g * per + 1:02d}.jpeg", f"drone image-{g * per + 1:02d}"))
            sdir = _view_dir(root, b.split, b.role, "street", b.id)
            for p in sorted(sdir.glob("*.jpg"))[:2]:
                tiles.append(_tile(p, f"street {p.stem}"))
            if b.split == "train":
                for p in sorted((root / "train" / "google" / b.id).glob("*.jpg"))[:2]:
                    tiles.append(_tile(p, f"google {p.stem}"))
        sheet = np.concatenate(tiles, 1)
        path = out / f"{b.id}.png"
        cv2.imwrite(str(path), sheet)
        written.append(path)
    written.append(_overview(out / "overview.png", layout, renderer))
    return written


def _overview(path: Path, layout: Layout, renderer: Renderer) -> Path:
    x0, y0, x1, y1 = layout.extent
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    span = max(x1 - x0, y1 - y0) + 40
    light = Light(Light.sun_vector(150, 50), 0.4, 1.0, np.ones(3), 0.0, 0)
    size = 768
    top = renderer.render(ortho(size, span / size, np.array([cx, cy])), light).rgb[..., ::-1].copy()
    for b in layout.buildings:
        c = b.footprint.centroid
        u = int((c.x - cx) / (span / size) + size / 2)
        v = int(-(c.y - cy) / (span / size) + size / 2)
        role = "distractor" if b.role == "distractor" else b.split
        cv2.putText(top, b.id, (u - 16, v + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(top, b.id, (u - 16, v + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.45, SPLIT_COLOURS[role], 1, cv2.LINE_AA)
    dist = span * 0.9
    el = math.radians(35)
    C = np.array([cx - 0.4 * dist * math.cos(el), cy - dist * math.cos(el), dist * math.sin(el)])
    oblique = renderer.render(look_at(size, size, 60, C, np.array([cx, cy, 0.0])), light).rgb[..., ::-1]
    sheet = np.concatenate([_label(top, "region, north up (green train, orange test, red distractor)"),
                            _label(oblique, "oblique view from the south")], 1)
    cv2.imwrite(str(path), sheet)
    return path
