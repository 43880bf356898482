"""Procedural textures, evaluated per ray hit on batches of pixels (no per-pixel Python).

Detail comes from band-limited noise tiles summed over octaves whose wavelengths are not powers
of two of each other, so patterns never visibly repeat (repeats would confuse SIFT matching).
Each octave fades out where its wavelength falls under ~4 pixels of the hit's footprint: a cheap
mip-mapping that keeps far surfaces from aliasing into sparkle that no other view reproduces.
"""
from __future__ import annotations

import cv2
import numpy as np

from . import style
from .geometry import CAR, CAR_GLASS, CROWN, FACADE, GROUND, ROOF_FLAT, ROOF_TILE, TRUNK, UNIT, Materials
from .layout import GROUND_RES, rng_for

TILE = 256
PERIOD = 16.0      # texels per wavelength in a noise tile
LACUNARITY = 2.13


class NoiseBank:
    def __init__(self, seed: int, n_tiles: int = 4) -> None:
        rng = rng_for(seed, "noise")
        f = np.fft.fftfreq(TILE)
        r = np.hypot(*np.meshgrid(f, f))
        r[0, 0] = 1e-9
        # one octave wide band around 1/PERIOD cycles per texel; periodic by construction
        amp = np.exp(-0.5 * (np.log2(r * PERIOD) / 0.5) ** 2)
        tiles = []
        for _ in range(n_tiles):
            t = np.real(np.fft.ifft2(np.fft.fft2(rng.standard_normal((TILE, TILE))) * amp))
            t = (t - t.mean()) / t.std()
            # one wrapped row and column so the bilinear neighbours need no second modulo
            tiles.append(np.pad(t, ((0, 1), (0, 1)), mode="wrap").astype(np.float32).ravel())
        self.tiles = tiles

    def octave(self, k: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Bilinear lookup of tile k at texel coordinates (x, y), wrapping around."""
        t = self.tiles[k % len(self.tiles)]
        x0, y0 = np.floor(x), np.floor(y)
        fx, fy = (x - x0).astype(np.float32), (y - y0).astype(np.float32)
        i = (y0.astype(np.int64) & (TILE - 1)) * (TILE + 1) + (x0.astype(np.int64) & (TILE - 1))
        a, b = t[i], t[i + 1]
        c, d = t[i + (TILE + 1)], t[i + (TILE + 2)]
        ab = a + (b - a) * fx
        return ab + (c + (d - c) * fx - ab) * fy

    def fbm(self, u: np.ndarray, v: np.ndarray, wavelength: float, octaves: int, fp: np.ndarray,
            gain: float = 0.6, seed: float | np.ndarray = 0.0) -> np.ndarray:
        """Sum of octaves with unit total variance (before LOD fading); fp = metres per pixel."""
        out = np.zeros(len(u), np.float32)
        norm = np.sqrt(sum(gain ** (2 * k) for k in range(octaves)))
        seed = np.asarray(seed)
        for k in range(octaves):
            lam = wavelength / LACUNARITY ** k
            w = np.clip(lam / (fp * 4.0) - 0.5, 0.0, 1.0).astype(np.float32)
            act = np.nonzero(w > 0)[0]
            if len(act) == 0:
                break
            s = PERIOD / lam
            g = np.float32(gain ** k / norm)
            if len(act) > 0.7 * len(w):
                off = 37.7 * (k + 1) + seed
                out += g * w * self.octave(k, u * s + off, v * s + off * 0.61)
            else:  # fine octaves matter only for near pixels: evaluate those alone
                off = 37.7 * (k + 1) + (seed[act] if seed.ndim else seed)
                out[act] += g * w[act] * self.octave(k, u[act] * s + off, v[act] * s + off * 0.61)
        return out


def hash01(*keys: np.ndarray) -> np.ndarray:
    """Deterministic per-cell random numbers in [0, 1) from integer cell keys."""
    h = np.full(np.shape(keys[0]), 0x9E3779B97F4A7C15, np.uint64)
    with np.errstate(over="ignore"):
        for k in keys:
            k64 = np.asarray(k).astype(np.int64).astype(np.uint64)
            h ^= k64 + np.uint64(0x9E3779B97F4A7C15) + (h << np.uint64(6)) + (h >> np.uint64(2))
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    return ((h >> np.uint64(40)).astype(np.float64) / float(1 << 24)).astype(np.float32)


def _remap(img: np.ndarray, x: np.ndarray, y: np.ndarray, interp: int) -> np.ndarray:
    """cv2.remap on 1D coordinate lists; outside the image the border colour is FIELD."""
    n = len(x)
    w = 512
    pad = (-n) % w
    if pad:
        x, y = np.concatenate([x, np.zeros(pad, np.float32)]), np.concatenate([y, np.zeros(pad, np.float32)])
    if img.ndim == 3:
        border = tuple(int(c * 255 + 0.5) for c in style.GROUND_COLOURS[style.FIELD])
    else:
        border = style.FIELD
    out = cv2.remap(img, x.reshape(-1, w), y.reshape(-1, w), interp, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=border)
    return out.reshape(n + pad, *img.shape[2:])[:n]


def _fade(size: float | np.ndarray, fp: np.ndarray) -> np.ndarray:
    """1 where a feature of `size` metres spans >= 4 pixels, 0 under 1.5 pixels."""
    return np.clip((size / fp - 1.5) / 2.5, 0.0, 1.0).astype(np.float32)


def _grid(a: np.ndarray, period: float | np.ndarray):
    """Cell index and fractional position of a regular grid."""
    q = a / period
    i = np.floor(q)
    return i, (q - i).astype(np.float32)


class Shader:
    def __init__(self, materials: Materials, noise: NoiseBank, ground_colours: np.ndarray,
                 ground_classes: np.ndarray, ground_origin: tuple[float, float]) -> None:
        self.m = materials
        self.noise = noise
        self.gcol = ground_colours
        self.gcls = ground_classes
        self.gorigin = np.asarray(ground_origin, float)

    def albedo(self, mat: np.ndarray, uv: np.ndarray, aux: np.ndarray, fp: np.ndarray) -> np.ndarray:
        out = np.empty((len(mat), 3), np.float32)
        kind = self.m.kind[mat]
        for k, fn in ((FACADE, self._facade), (ROOF_FLAT, self._roof_flat), (ROOF_TILE, self._roof_tile),
                      (GROUND, self._ground), (CROWN, self._crown), (TRUNK, self._plain),
                      (CAR, self._car), (CAR_GLASS, self._plain), (UNIT, self._unit)):
            sel = np.nonzero(kind == k)[0]
            if len(sel):
                out[sel] = fn(mat[sel], uv[sel, 0].astype(np.float64), uv[sel, 1].astype(np.float64),
                              aux[sel], fp[sel])
        return out

    # -- materials ------------------------------------------------------------------
    def _plain(self, m, u, v, aux, fp):
        n = self.noise.fbm(u, v, 1.5, 5, fp, seed=3.0)
        return self.m.colour[m] * (1 + 0.15 * n)[:, None]

    def _car(self, m, u, v, aux, fp):
        n = self.noise.fbm(u, v, 0.8, 3, fp, seed=5.0)
        return self.m.colour[m] * (1 + 0.04 * n)[:, None]

    def _unit(self, m, u, v, aux, fp):
        _, fr = _grid(u, 0.35)
        vents = 1 - 0.25 * _fade(0.35, fp) * (fr < 0.35)
        n = self.noise.fbm(u, v, 2.0, 5, fp, seed=9.0)
        return self.m.colour[m] * (vents * (1 + 0.12 * n))[:, None]

    def _crown(self, m, u, v, aux, fp):
        seed = self.m.params[m, 5]
        n = self.noise.fbm(u, v, 2.4, 6, fp, gain=0.7, seed=seed)
        leaf = np.clip(0.75 + 0.55 * n, 0.25, 1.6)
        return self.m.colour[m] * leaf[:, None]

    def _facade(self, m, u, v, aux, fp):
        p = self.m.params[m]
        floor_h, bay, ww, wh, pattern, seed = (p[:, i] for i in range(6))
        base, glass, frame = self.m.colour[m], self.m.colour2[m], self.m.colour3[m]
        nz = self.noise
        stain = nz.fbm(u + seed, v, 9.0, 8, fp, gain=0.62, seed=seed)
        streak = nz.fbm((u + seed) * 2.5, v * 0.25, 6.0, 3, fp, seed=seed + 1.0)
        wall = base * (1 + 0.11 * stain + 0.05 * streak)[:, None]

        # masonry / panel joints; per-unit colour variation breaks the repetition
        course_h = np.choose(pattern.astype(int), [0.075, 0.45, floor_h / 1.0, 1.2, 1.5]).astype(np.float64)
        unit_w = np.choose(pattern.astype(int), [0.24, 0.9, bay, 1.2, 1.5]).astype(np.float64)
        row, fv = _grid(v, course_h)
        col, fu = _grid(u + 0.5 * unit_w * (row % 2), unit_w)
        joint_w = np.choose(pattern.astype(int), [0.012, 0.012, 0.015, 0.0, 0.0]).astype(np.float32)
        joint = ((fv * course_h < joint_w) | (fu * unit_w < joint_w)).astype(np.float32)
        vary = hash01(row, col, seed) - 0.5
        amp = np.choose(pattern.astype(int), [0.16, 0.10, 0.05, 0.0, 0.0]).astype(np.float32)
        f_unit = _fade(np.minimum(course_h, unit_w), fp)
        wall = wall * (1 + f_unit * (amp * vary - 0.25 * joint * _fade(joint_w * 6, fp)))[:, None]

        # floor slabs
        fi, flv = _grid(v, floor_h)
        slab = (flv * floor_h < 0.3).astype(np.float32) * _fade(0.3, fp)
        wall = wall * (1 - 0.12 * slab)[:, None]

        # window grid, centred on each wall, kept clear of the wall ends
        s = u - 0.5 * aux
        bi = np.floor(s / bay + 0.5)
        lu = s - bi * bay
        sill = 0.55 * (floor_h - wh)
        lv = flv * floor_h - sill
        margin = 0.5 * ww + 0.5
        inside = (np.abs(lu) < 0.5 * ww) & (lv > 0) & (lv < wh) & (np.abs(s) < 0.5 * aux - margin) & (fi >= 0)
        h1, h2, h3 = hash01(fi, bi, seed), hash01(bi, fi, seed + 7), hash01(fi + 31, bi, seed)
        g = glass * (0.55 + 0.9 * h1)[:, None] * (1.1 - 0.35 * lv / np.maximum(wh, 1e-3))[:, None]
        g = g + (0.18 * (h3 > 0.7) * (1 - lv / np.maximum(wh, 1e-3)))[:, None]  # sky reflection
        blind = (h2 > 0.6) & (lv > wh * (1 - 0.8 * h3))
        slat = _grid(v, 0.08)[1] < 0.2
        blind_col = np.array([0.80, 0.77, 0.70], np.float32) * (1 - 0.15 * slat * _fade(0.08, fp))[:, None]
        g = np.where(blind[:, None], blind_col, g)
        fw = 0.07
        edge = (np.abs(lu) > 0.5 * ww - fw) | (lv < fw) | (lv > wh - fw) | (np.abs(lv - 0.6 * wh) < 0.5 * fw)
        win = np.where(edge[:, None], frame, g)
        detail = np.where(inside[:, None], win, wall)
        # far away the grid averages out instead of aliasing
        cov = np.clip(ww * wh / (bay * floor_h), 0, 1)[:, None]
        mean = wall * (1 - cov) + glass * 1.0 * cov
        # windows stay visible down to ~2 pixels, as in photos; below that they blur into the wall
        f = np.clip((np.minimum(ww, wh) / fp - 1.0) / 2.0, 0.0, 1.0)[:, None]
        return detail * f + mean * (1 - f)

    def _roof_flat(self, m, u, v, aux, fp):
        seed = self.m.params[m, 5]
        nz = self.noise
        big = nz.fbm(u, v, 14.0, 9, fp, gain=0.62, seed=seed)
        patches = np.clip(nz.fbm(u, v, 7.0, 2, fp, seed=seed + 3) - 0.6, 0, None)
        _, fr = _grid(u, 1.6)
        seam = (fr < 0.03).astype(np.float32) * _fade(0.15, fp)
        shade = (1 + 0.14 * big) * (1 - 0.25 * patches) * (1 - 0.2 * seam)
        return self.m.colour[m] * shade[:, None]

    def _roof_tile(self, m, u, v, aux, fp):
        seed = self.m.params[m, 5]
        row, fv = _grid(v, 0.34)
        col, _ = _grid(u + 0.13 * (row % 2), 0.26)
        f = _fade(0.34, fp)
        rows = 0.82 + 0.3 * fv
        var = hash01(row, col, seed) - 0.5
        moss = self.noise.fbm(u, v, 5.0, 7, fp, seed=seed)
        shade = (1 + f * (rows - 0.97 + 0.2 * var)) * (1 + 0.1 * moss)
        return self.m.colour[m] * shade[:, None]

    def _ground(self, m, u, v, aux, fp):
        # texel coordinates are small (a few thousand), so float32 and cv2.remap are exact enough
        tx = ((u - self.gorigin[0]) / GROUND_RES - 0.5).astype(np.float32)
        ty = ((v - self.gorigin[1]) / GROUND_RES - 0.5).astype(np.float32)
        c = _remap(self.gcol, tx, ty, cv2.INTER_LINEAR).astype(np.float32) * np.float32(1 / 255)
        cls = _remap(self.gcls, tx, ty, cv2.INTER_NEAREST)
        nz = self.noise
        shade = np.ones(len(u), np.float32)
        grass = cls == style.GRASS
        if grass.any():
            i = np.nonzero(grass)[0]
            n = nz.fbm(u[i], v[i], 6.0, 10, fp[i], gain=0.72, seed=1.0)
            shade[i] = 1 + 0.26 * n
        field = cls == style.FIELD
        if field.any():
            # farmland parcels around the campus: own crop colour and furrow direction per parcel,
            # so the far ground carries features too
            i = np.nonzero(field)[0]
            fu, fv = u[i], v[i]
            warp = 12.0 * nz.fbm(fu, fv, 150.0, 2, fp[i], seed=21.0)
            pr, _ = _grid(fv + warp, 57.0)
            pc, frac = _grid(fu + 0.5 * warp + 23.0 * (pr % 3), 83.0)
            h1, h2, h3 = hash01(pr, pc, 5), hash01(pc, pr, 6), hash01(pr + 7, pc, 8)
            ang = h2 * np.float32(np.pi)
            along = np.cos(ang) * fu + np.sin(ang) * fv
            furrow = np.sin(along * np.float32(2 * np.pi / 2.2)).astype(np.float32) * _fade(2.2, fp[i])
            tint = np.stack([0.85 + 0.4 * h1, 0.9 + 0.25 * h3, 0.7 + 0.5 * h1 * h3], -1).astype(np.float32)
            hedge = (frac * 83.0 < 2.0).astype(np.float32) * _fade(2.0, fp[i])
            n = nz.fbm(fu, fv, 8.0, 10, fp[i], gain=0.7, seed=1.5)
            c[i] = c[i] * tint * (1 - 0.45 * hedge)[:, None]
            shade[i] = 1 + 0.2 * n + 0.1 * furrow
        hard = np.isin(cls, (style.ROAD, style.PARKING, style.MARKING, style.GRAVEL))
        if hard.any():
            i = np.nonzero(hard)[0]
            n = nz.fbm(u[i], v[i], 5.0, 9, fp[i], gain=0.7, seed=2.0)
            shade[i] = 1 + 0.14 * n
        paved = np.isin(cls, (style.PAVEMENT, style.PLAZA))
        if paved.any():
            i = np.nonzero(paved)[0]
            plaza = cls[i] == style.PLAZA
            pw = np.where(plaza, 1.2, 0.6)
            ph = np.where(plaza, 0.6, 0.6)
            row, fv = _grid(v[i], ph)
            col, fu = _grid(u[i] + 0.5 * pw * (row % 2) * plaza, pw)
            joint = ((fu * pw < 0.03) | (fv * ph < 0.03)).astype(np.float32) * _fade(0.1, fp[i])
            var = (hash01(row, col, 17) - 0.5) * _fade(0.6, fp[i])
            n = nz.fbm(u[i], v[i], 4.0, 9, fp[i], gain=0.65, seed=4.0)
            shade[i] = (1 + 0.09 * n + 0.16 * var) * (1 - 0.3 * joint)
        return c * shade[:, None]
