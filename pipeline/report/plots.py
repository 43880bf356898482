"""The report's figures (matplotlib, Agg, PNG): point-cloud snapshots, render montages, training curves."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    plt = _plt()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(out, dpi=DPI, bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return out


def oblique_projection(xyz: np.ndarray, azimuth_deg: float = -60.0, elevation_deg: float = 35.0) -> tuple[np.ndarray, np.ndarray]:
    """Screen coordinates [N,2] (x right, y up) and depth [N] of an orthographic view from above at an angle.

    The viewer stands at `azimuth_deg` (from the x axis, counter-clockwise) and looks down by
    `elevation_deg`; larger depth is farther away, so drawing in decreasing depth paints near points last.
    """
    a, e = math.radians(azimuth_deg), math.radians(elevation_deg)
    to_viewer = np.array([math.cos(e) * math.cos(a), math.cos(e) * math.sin(a), math.sin(e)])
    right = np.array([-math.sin(a), math.cos(a), 0.0])
    up = np.cross(to_viewer, right)
    p = np.asarray(xyz, dtype=np.float64)
    return np.stack([p @ right, p @ up], axis=1), -(p @ to_viewer)


def plot_point_clouds(clouds: Mapping[str, tuple[np.ndarray, np.ndarray]], out: Path, title: str = "",
                      max_points: int = 30000, seed: int = 0) -> Path:
    """One panel per cloud (label -> (xyz [N,3], rgb uint8 [N,3])) in a shared oblique view, near points on top."""
    plt = _plt()
    labels = list(clouds)
    n = max(1, len(labels))
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    rng = np.random.default_rng(seed)
    nonempty = [c[0] for c in clouds.values() if len(c[0])]
    allxyz = np.concatenate(nonempty) if nonempty else np.zeros((0, 3))
    centre = np.median(allxyz, axis=0) if len(allxyz) else np.zeros(3)
    lims = None
    if len(allxyz):
        uv_all, _ = oblique_projection(allxyz - centre)
        lo, hi = np.percentile(uv_all, 1, axis=0), np.percentile(uv_all, 99, axis=0)
        half = 0.55 * float(max(hi - lo)) or 1.0
        mid = (lo + hi) / 2
        lims = (mid[0] - half, mid[0] + half, mid[1] - half, mid[1] + half)
    for ax, label in zip(axes[0], labels):
        xyz, rgb = clouds[label]
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")
        ax.set_facecolor("#f0f2f5")
        ax.set_title(f"{label}: {len(xyz):,} points", fontsize=10)
        if not len(xyz):
            ax.text(0.5, 0.5, "no points", ha="center", va="center", transform=ax.transAxes, color="#888")
            continue
        if len(xyz) > max_points:
            keep = rng.choice(len(xyz), max_points, replace=False)
            xyz, rgb = xyz[keep], rgb[keep]
        uv, depth = oblique_projection(xyz - centre)
        order = np.argsort(-depth)
        size = float(np.clip(12000.0 / len(xyz), 0.3, 12.0))
        ax.scatter(uv[order, 0], uv[order, 1], c=np.asarray(rgb)[order] / 255.0, s=size, marker="o",
                   linewidths=0, rasterized=True)
        if lims:
            ax.set_xlim(lims[0], lims[1])
            ax.set_ylim(lims[2], lims[3])
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, out)


def plot_image_grid(rows: Sequence[tuple[str, Sequence[tuple[str, np.ndarray | None]]]], out: Path,
                    title: str = "", cell_in: float = 1.7, map_unit: str = "") -> Path:
    """A montage: one row per (label, panels), each panel (column title, image or None).

    An image is uint8 RGB [H,W,3] or a float map [H,W] (colour-mapped with 0 as no data, shown white,
    its value range written under it in `map_unit`).
    """
    plt = _plt()
    n_rows = max(1, len(rows))
    n_cols = max(1, max((len(p) for _, p in rows), default=1))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell_in * n_cols + 0.4, cell_in * n_rows + 0.3), squeeze=False)
    # One colour scale per column, so a map reads the same in every row (e.g. the heights of all scales).
    limits: dict[int, tuple[float, float]] = {}
    for c in range(n_cols):
        vals = [_valid(p[c][1]) for _, p in rows if c < len(p) and p[c][1] is not None and np.asarray(p[c][1]).ndim == 2]
        vals = [v for v in vals if v.size]
        if vals:
            limits[c] = (min(float(v.min()) for v in vals), max(float(v.max()) for v in vals))
    for r, (label, panels) in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c >= len(panels):
                ax.axis("off")
                continue
            name, img = panels[c]
            if r == 0:
                ax.set_title(name, fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if img is None:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes, color="#888", fontsize=8)
                continue
            img = np.asarray(img)
            if img.ndim == 2:
                data = np.ma.masked_where(~np.isfinite(img) | (img == 0), img.astype(np.float32))
                cmap = plt.get_cmap("turbo" if "height" in name or "DSM" in name else "viridis").with_extremes(bad="white")
                lo, hi = limits.get(c, (None, None))
                ax.imshow(data, cmap=cmap, interpolation="nearest", vmin=lo, vmax=hi)
                if data.count() and lo is not None:
                    ax.set_xlabel(f"{lo:.1f} – {hi:.1f} {map_unit}".strip(), fontsize=7)
            else:
                ax.imshow(img, interpolation="nearest")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, out)


def _valid(img: np.ndarray) -> np.ndarray:
    """The values of a float map that hold data (finite, non-zero: 0 means empty in the render maps)."""
    a = np.asarray(img, dtype=np.float32)
    return a[np.isfinite(a) & (a != 0)]


def plot_scalar_groups(series: Mapping[str, tuple[np.ndarray, np.ndarray]], out: Path, x_label: str = "step") -> Path:
    """Training curves: tags grouped by their prefix ('loss/total' -> 'loss'), one panel per group."""
    plt = _plt()
    groups: dict[str, list[str]] = {}
    for tag in sorted(series):
        groups.setdefault(tag.split("/")[0] if "/" in tag else tag, []).append(tag)
    n = max(1, len(groups))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.3 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (group, tags) in zip(axes.flat, groups.items()):
        for tag in tags:
            x, y = series[tag]
            label = tag[len(group) + 1:] if tag.startswith(group + "/") else tag
            ax.plot(x, y, marker="o" if len(x) <= 25 else None, ms=3, lw=1.4, label=label)
        ax.set_title(group, fontsize=10)
        ax.set_xlabel(x_label, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if len(tags) > 1 or tags[0] != group:
            ax.legend(fontsize=7, ncol=2 if len(tags) > 4 else 1, framealpha=0.7)
    fig.tight_layout()
    return _save(fig, out)
