"""Retrieval metrics of the University-1652 protocol: CMC (Recall@K), R@top1% and AP over the full gallery.

Every query is ranked against the whole gallery, distractors included (some public code drops them,
which inflates the scores). AP follows University-1652's `compute_mAP`: the trapezoid rule over the
ranks of the true matches, `ap += d_recall * (old_precision + precision) / 2`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

log = logging.getLogger("skylink")


def average_precision(positions: np.ndarray) -> float:
    """AP of one query from the sorted 0-based positions of its true matches in the ranking.

    University-1652's trapezoid rule: for the i-th match (0-based) at position r_i,
    precision = (i + 1) / (r_i + 1) and old_precision = i / r_i (1 when r_i == 0); each match adds
    (old_precision + precision) / 2 / n_matches.
    """
    positions = np.sort(np.asarray(positions, dtype=np.int64))
    n = len(positions)
    if n == 0:
        raise ValueError("average_precision: the query has no true match in the gallery")
    i = np.arange(n, dtype=np.float64)
    r = positions.astype(np.float64)
    precision = (i + 1) / (r + 1)
    old_precision = np.where(r == 0, 1.0, i / np.maximum(r, 1))
    return float(np.sum((old_precision + precision) / 2) / n)


def top1pct_k(n_gallery: int) -> int:
    """K of "Recall@top1%": University-1652 (and Sample4Geo) read CMC[round(0.01 * N)], i.e. K = round(N / 100) + 1."""
    return int(round(0.01 * n_gallery)) + 1


@dataclass
class RetrievalMetrics:
    """The protocol's summary of one task (e.g. street -> satellite)."""

    n_queries: int
    n_gallery: int
    recall: dict[int, float]                 # K -> CMC at K, in [0, 1]
    recall_top1pct: float
    top1pct_k: int
    ap: float                                # mean AP over all queries
    cmc: np.ndarray = field(repr=False)      # CMC at K = 1..n_gallery
    n_without_match: int = 0                 # queries with no true match in the gallery (scored as misses)

    def to_dict(self) -> dict:
        return {
            "n_queries": self.n_queries,
            "n_gallery": self.n_gallery,
            **{f"R@{k}": round(100 * v, 4) for k, v in sorted(self.recall.items())},
            "R@top1%": round(100 * self.recall_top1pct, 4),
            "top1%_k": self.top1pct_k,
            "AP": round(100 * self.ap, 4),
            "n_without_match": self.n_without_match,
        }


def summarize(positions: Sequence[np.ndarray], n_gallery: int, ks: Sequence[int] = (1, 5, 10)) -> RetrievalMetrics:
    """Metrics from each query's 0-based positions of its true matches in its full ranking.

    A query without any true match cannot be ranked; University-1652 skips it (cmc[0] = -1) but still
    divides by the number of all queries, so it counts as a miss. We do the same and report how many
    there were in `n_without_match`.
    """
    cmc_hits = np.zeros(n_gallery, dtype=np.int64)
    aps = []
    missing = 0
    for pos in positions:
        pos = np.asarray(pos)
        if pos.size == 0:
            missing += 1
            continue
        first = int(pos.min())
        cmc_hits[first] += 1
        aps.append(average_precision(pos))
    n = len(positions)
    if missing:
        log.warning("evaluate: %d of %d queries have no true match in the gallery; they count as misses", missing, n)
    cmc = np.cumsum(cmc_hits) / max(n, 1)
    k1 = top1pct_k(n_gallery)

    def at(k: int) -> float:
        return float(cmc[min(k, n_gallery) - 1]) if n_gallery else 0.0

    return RetrievalMetrics(
        n_queries=n, n_gallery=n_gallery, recall={int(k): at(k) for k in ks},
        recall_top1pct=at(k1), top1pct_k=k1, ap=float(np.sum(aps) / max(n, 1)),
        cmc=cmc, n_without_match=missing,
    )


def encode_labels(query_labels: Sequence[str], gallery_labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Map string labels (building ids) to integers shared by queries and gallery."""
    vocab = {lab: i for i, lab in enumerate(sorted(set(gallery_labels) | set(query_labels)))}
    return (np.array([vocab[x] for x in query_labels], dtype=np.int64),
            np.array([vocab[x] for x in gallery_labels], dtype=np.int64))


@dataclass
class Ranking:
    """The exact full ranking of every query: match positions for the metrics, the head for display."""

    positions: list[np.ndarray]          # per query: sorted 0-based positions of its true matches
    top: np.ndarray                      # Q x k gallery indices of the head of each ranking
    top_scores: np.ndarray               # Q x k cosine similarities


def rank_all(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: Sequence[str],
    gallery_labels: Sequence[str],
    *,
    k: int = 10,
    device: str = "cpu",
    max_elements: int = 1 << 23,
) -> Ranking:
    """Rank the whole gallery for each query by inner product (cosine for L2-normalised embeddings).

    The sort is stable (ties go to the lower gallery index) so that results are reproducible. Queries
    are processed in chunks so that a chunk's score matrix stays under `max_elements` entries.
    """
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise ValueError(f"rank_all: query {queries.shape} and gallery {gallery.shape} embeddings do not match")
    if len(query_labels) != len(queries) or len(gallery_labels) != len(gallery):
        raise ValueError("rank_all: label lists and embeddings differ in length")
    ql, gl = encode_labels(query_labels, gallery_labels)
    n = len(gallery)
    k = min(k, n)
    dev = torch.device(device)
    g = torch.from_numpy(np.ascontiguousarray(gallery, dtype=np.float32)).to(dev)
    g_lab = torch.from_numpy(gl).to(dev)
    chunk = max(1, max_elements // max(n, 1))
    positions: list[np.ndarray] = []
    tops, top_scores = [], []
    for s in range(0, len(queries), chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[s:s + chunk], dtype=np.float32)).to(dev)
        scores = q @ g.T
        order = torch.sort(scores, dim=1, descending=True, stable=True).indices
        good = g_lab[order] == torch.from_numpy(ql[s:s + chunk]).to(dev)[:, None]
        rows, cols = torch.nonzero(good, as_tuple=True)
        rows, cols = rows.cpu().numpy(), cols.cpu().numpy()
        # nonzero is row-major, so each row's positions arrive sorted.
        splits = np.searchsorted(rows, np.arange(1, len(q)))
        positions.extend(np.split(cols, splits))
        tops.append(order[:, :k].cpu().numpy())
        top_scores.append(torch.gather(scores, 1, order[:, :k]).cpu().numpy())
    return Ranking(
        positions=positions,
        top=np.concatenate(tops) if tops else np.zeros((0, k), np.int64),
        top_scores=np.concatenate(top_scores) if top_scores else np.zeros((0, k), np.float32),
    )


def per_query_scores(positions: Sequence[np.ndarray], ks: Sequence[int] = (1, 5, 10)) -> dict[str, np.ndarray]:
    """Each query's hit at K (0/1) and AP, the values whose means are R@K and AP (a query without a
    true match scores 0, as in `summarize`)."""
    first = np.array([int(np.min(p)) if len(p) else np.iinfo(np.int64).max for p in positions], dtype=np.int64)
    out = {f"R@{k}": (first < k).astype(np.float64) for k in ks}
    out["AP"] = np.array([average_precision(p) if len(p) else 0.0 for p in positions], dtype=np.float64)
    return out


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of per-query `values`, resampling the queries.

    It says how far a score on this query set could move on another draw of queries from the same
    places; with 90 queries an R@1 near 5% spans about +-5 points. Paired differences (two models on
    the same queries) go in as `a - b`.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"bootstrap_ci: need a non-empty 1-d array of per-query values, got shape {values.shape}")
    rng = np.random.default_rng(seed)
    chunk = max(1, (1 << 22) // len(values))   # bounded memory for large query sets
    means = np.concatenate([values[rng.integers(0, len(values), size=(min(chunk, n_boot - s), len(values)))].mean(axis=1)
                            for s in range(0, n_boot, chunk)])
    alpha = (1.0 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)
