"""Training augmentations per view, on RGB uint8 arrays with an explicit random generator (deterministic).

Street: random resized crops (a narrow view sees a part of the facade), colour jitter, blur; no flips,
since mirroring a street view breaks its geometry relative to the satellite tile.
Satellite: a random multiple of 90 degrees (a nadir tile has no preferred orientation; the building,
which is the label, is unchanged), a mild crop, colour jitter, blur.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentParams:
    image_size: int
    street_crop_scale: tuple[float, float] = (0.6, 1.0)
    satellite_crop_scale: tuple[float, float] = (0.85, 1.0)
    color_jitter: float = 0.3
    blur_prob: float = 0.3
    satellite_rot90: bool = True
    satellite_size: int = 0          # satellite tiles' size (0: image_size)


def random_resized_crop(img: np.ndarray, size: int, scale: tuple[float, float], rng: np.random.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> np.ndarray:
    """A crop of `scale` of the area and aspect in `ratio`, resized to size x size."""
    h, w = img.shape[:2]
    area = h * w
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        cw = int(round(np.sqrt(target * aspect)))
        ch = int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            y = int(rng.integers(0, h - ch + 1))
            x = int(rng.integers(0, w - cw + 1))
            img = img[y:y + ch, x:x + cw]
            break
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR)


def color_jitter(img: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by a factor in [1 - s, 1 + s], random order-free."""
    if strength <= 0:
        return img
    x = img.astype(np.float32)
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    x *= b
    mean = x.mean()
    x = (x - mean) * c + mean
    gray = x @ np.array([0.299, 0.587, 0.114], np.float32)
    x = (x - gray[..., None]) * s + gray[..., None]
    return np.clip(x, 0, 255).astype(np.uint8)


def gaussian_blur(img: np.ndarray, rng: np.random.Generator, sigma: tuple[float, float] = (0.3, 1.5)) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(rng.uniform(*sigma)))


def augment_street(img: np.ndarray, p: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    out = random_resized_crop(img, p.image_size, p.street_crop_scale, rng)
    out = color_jitter(out, p.color_jitter, rng)
    if rng.random() < p.blur_prob:
        out = gaussian_blur(out, rng)
    return out


def augment_satellite(img: np.ndarray, p: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    out = random_resized_crop(img, p.satellite_size or p.image_size, p.satellite_crop_scale, rng, ratio=(1.0, 1.0))
    if p.satellite_rot90:
        out = np.rot90(out, k=int(rng.integers(0, 4))).copy()
    out = color_jitter(out, p.color_jitter, rng)
    if rng.random() < p.blur_prob:
        out = gaussian_blur(out, rng)
    return out


def view_dropout(mask: np.ndarray, share: float, rng: np.random.Generator) -> np.ndarray:
    """Drop `share` of the present views of every scale (at least one view survives): the 3D
    branch's augmentation, since its features are cached and the renders cannot be re-augmented."""
    out = mask.copy()
    if share <= 0:
        return out
    for s in range(mask.shape[0]):
        present = np.flatnonzero(mask[s])
        n_drop = min(len(present) - 1, int(round(share * len(present))))
        if n_drop > 0:
            out[s, rng.choice(present, size=n_drop, replace=False)] = False
    return out
