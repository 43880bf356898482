"""Plots of the evaluation: Recall@K curves, first-match rank histograms and GREM score distributions (PNG)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out: Path) -> Path:
    """Write the figure atomically and close it (also when saving fails)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        _plt().close(fig)
    tmp.replace(out)
    return out


def plot_recall_curve(curves: Mapping[str, np.ndarray], out: Path, max_k: int = 50, title: str = "Recall@K") -> Path:
    """One line per task: CMC (Recall@K in [0, 1], K = 1..) up to `max_k`, in percent."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, cmc in curves.items():
        cmc = np.asarray(cmc)
        k = min(max_k, len(cmc))
        ax.plot(np.arange(1, k + 1), 100 * cmc[:k], marker="o" if k <= 20 else None, ms=3, label=name)
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_ylim(0, 101)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, out)


def plot_rank_histogram(first_ranks: Mapping[str, Sequence[int]], out: Path, max_rank: int = 50) -> Path:
    """Histogram of each query's 1-based rank of its first true match (ranks above max_rank in the last bin)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    bins = np.arange(1, max_rank + 2)
    for name, ranks in first_ranks.items():
        r = np.clip(np.asarray(list(ranks)), 1, max_rank)
        ax.hist(r, bins=bins, alpha=0.6, label=name)
    ax.set_xlabel(f"rank of the first true match (>{max_rank} clipped)")
    ax.set_ylabel("queries")
    ax.legend()
    return _save(fig, out)


def plot_grem_scores(right: Sequence[float], wrong: Sequence[float], out: Path) -> Path:
    """GREM similarity scores of google images that show the right building vs. another one (synthetic truth)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 4))
    all_s = np.asarray(list(right) + list(wrong), dtype=float)
    bins = np.linspace(all_s.min(), all_s.max(), 25) if all_s.size and np.ptp(all_s) > 0 else 10
    ax.hist(right, bins=bins, alpha=0.6, label="right building")
    ax.hist(wrong, bins=bins, alpha=0.6, label="other building")
    ax.set_xlabel("cosine similarity to the building's street images")
    ax.set_ylabel("google images")
    ax.legend()
    return _save(fig, out)
