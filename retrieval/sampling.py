"""Training batch sampling: unique building ids per batch, flown buildings gathered, hard negatives.

An epoch is `rounds` passes over the train buildings; each pass is an ordering of all buildings cut into
batches, so no batch ever holds one building twice. Within a pass:

- **Flown buildings are gathered** (at least `flown_per_batch` per batch that holds any, when that many
  exist), so the 3D InfoNCE, which only sees flown buildings, has negatives in every batch it runs on.
- **Hard negatives** (Sample4Geo): buildings are placed in groups of a seed and a few of its nearest
  neighbours, by position where the dataset gives positions (`read_positions`), and after the first
  epoch by the current model's similarity (`similarity_neighbours`), which needs no positions.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("skylink")

Batch = list[tuple[str, int]]          # (building id, round)
Neighbours = dict[str, list[str]]      # building id -> other buildings, nearest first


# ---------------------------------------------------------------- neighbours

def read_positions(path: Path) -> dict[str, np.ndarray]:
    """Building id -> position (east, north in metres, or any planar coordinates) from a JSON file
    `{"0001": [x, y], ...}`. Real datasets may ship one (satellite tiles' geo metadata);
    University-1652 does not, and neighbour sampling is then skipped."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read building positions ({e})") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object of building id -> [x, y]")
    out = {}
    for bid, xy in raw.items():
        try:
            arr = np.asarray(xy, np.float64).ravel()
        except (TypeError, ValueError):
            arr = np.zeros(0)
        if arr.shape[0] < 2 or not np.isfinite(arr[:2]).all():
            raise ValueError(f"{path}: building {bid}: position {xy!r} is not [x, y]")
        out[str(bid)] = arr[:2]
    return out


def _top_k(ids: Sequence[str], dist: np.ndarray, k: int) -> Neighbours:
    """Nearest-first neighbour lists from an N x N distance matrix (self excluded)."""
    d = dist.astype(np.float64, copy=True)
    np.fill_diagonal(d, np.inf)
    k = min(k, len(ids) - 1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    return {ids[i]: [ids[j] for j in order[i]] for i in range(len(ids))}


def position_neighbours(positions: dict[str, np.ndarray], ids: Sequence[str], k: int) -> Neighbours:
    """The k nearest buildings of each id that has a position (ids without one get no list)."""
    known = [b for b in ids if b in positions]
    if len(known) < 2:
        return {}
    xy = np.stack([positions[b] for b in known])
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    return _top_k(known, dist, k)


def similarity_neighbours(ids: Sequence[str], street: np.ndarray, satellite: np.ndarray, k: int) -> Neighbours:
    """Sample4Geo's dynamic similarity sampling: for each building, the buildings whose satellite tiles
    the current model ranks closest to its street image (L2-normalised N x d rows, one per id)."""
    sim = street @ satellite.T
    return _top_k(list(ids), -sim, k)


@torch.no_grad()
def embed_for_similarity(embed: Callable[[list[Path], str], torch.Tensor], street: Sequence[Path],
                         satellite: Sequence[Path], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(street, satellite) embeddings, one un-augmented image each per building, by `embed(paths, branch)`."""
    def run(paths: Sequence[Path], branch: str) -> np.ndarray:
        return torch.cat([embed(list(paths[i:i + batch_size]), branch).float().cpu()
                          for i in range(0, len(paths), batch_size)]).numpy()
    return run(street, "street"), run(satellite, "satellite")


# ---------------------------------------------------------------- orderings and batches

def grouped_order(ids: Sequence[str], neighbours: Neighbours | None, rng: np.random.Generator, group: int,
                  pool: int) -> list[str]:
    """A permutation of `ids` in which consecutive runs of up to `group` ids are a seed followed by
    neighbours drawn at random among its `pool` nearest that are still unplaced (Sample4Geo's
    custom_sampling); a plain random permutation without neighbours."""
    perm = [ids[i] for i in rng.permutation(len(ids))]
    if not neighbours or group <= 1:
        return perm
    members = set(ids)
    placed: set[str] = set()
    order: list[str] = []
    for seed in perm:
        if seed in placed:
            continue
        placed.add(seed)
        order.append(seed)
        near = [b for b in neighbours.get(seed, [])[:pool] if b in members and b not in placed]
        for j in rng.permutation(len(near))[: group - 1]:
            placed.add(near[j])
            order.append(near[j])
    return order


def _batch_sizes(n: int, batch_size: int) -> list[int]:
    """Near-equal batch sizes covering n, never a batch of one (contrastive training needs pairs)."""
    n_batches = max(1, -(-n // batch_size))
    if n_batches > 1 and n // n_batches < 2:
        n_batches = max(1, n // 2)
    return [len(c) for c in np.array_split(np.arange(n), n_batches)]


def _flown_counts(n_flown: int, sizes: list[int], per_batch: int) -> list[int]:
    """How many flown buildings each batch takes: as many batches as can hold >= per_batch each (all
    flown in one batch when fewer exist), no more than the batches can hold, spread evenly."""
    if n_flown == 0:
        return [0] * len(sizes)
    order = sorted(range(len(sizes)), key=lambda i: -sizes[i])     # the largest batches first
    k = max(1, min(len(sizes), n_flown // max(1, per_batch)))
    while sum(sizes[i] for i in order[:k]) < n_flown:                # must fit
        k += 1
    counts = [0] * len(sizes)
    left = n_flown
    for rank, i in enumerate(order[:k]):
        take = min(sizes[i], -(-left // (k - rank)))
        counts[i] = take
        left -= take
    return counts


def plan_batches(ids: list[str], batch_size: int, rounds: int, seed: int, epoch: int, *,
                 flown: set[str] | frozenset[str] = frozenset(), flown_per_batch: int = 8,
                 neighbours: Neighbours | None = None, group: int = 4, pool: int = 8) -> list[Batch]:
    """Batches of (building id, round) with unique ids inside each batch.

    Each round places every building once: flown buildings are gathered into as few batches as give
    each `flown_per_batch` of them, the others fill the remaining places; within both, `neighbours`
    (hard negatives) are placed in groups of `group`. The batch order is shuffled, so 3D steps spread
    over the epoch. Deterministic for (seed, epoch).
    """
    rng = np.random.default_rng([seed, epoch, 11])
    sizes = _batch_sizes(len(ids), batch_size)
    fl = [b for b in ids if b in flown]
    rest = [b for b in ids if b not in flown]
    batches: list[Batch] = []
    for r in range(rounds):
        counts = _flown_counts(len(fl), sizes, flown_per_batch)
        fl_order = grouped_order(fl, neighbours, rng, group, pool)
        rest_order = grouped_order(rest, neighbours, rng, group, pool)
        # Batches with flown buildings are cut from the flown order, and topped up from the others.
        round_batches: list[list[str]] = []
        fi = ri = 0
        for size, nf in zip(sizes, counts):
            members = fl_order[fi:fi + nf] + rest_order[ri:ri + size - nf]
            fi, ri = fi + nf, ri + size - nf
            round_batches.append(members)
        for j in rng.permutation(len(round_batches)):
            batches.append([(b, r) for b in round_batches[j]])
    return batches


def batch_stats(batches: list[Batch], flown: set[str]) -> dict[str, float]:
    """How many flown buildings the batches hold: the share of batches where the 3D InfoNCE runs (>= 2)
    and the mean count there; logged once per epoch."""
    counts = np.array([sum(b in flown for b, _ in batch) for batch in batches])
    run = counts[counts >= 2]
    return {"batches_with_3d": float((counts >= 2).mean()) if len(counts) else 0.0,
            "flown_per_3d_batch": float(run.mean()) if len(run) else 0.0}


class BatchPlanner:
    """The batches of each epoch for one training run: flown buildings gathered, hard negatives from
    positions (when given) and, from `similarity_start_epoch` on, from the model's similarity."""

    def __init__(self, ids: list[str], batch_size: int, rounds: int, seed: int, *, flown: set[str],
                 flown_per_batch: int = 8, positions: dict[str, np.ndarray] | None = None,
                 similarity: bool = False, similarity_start_epoch: int = 1, group: int = 4, pool: int = 8):
        self.ids, self.batch_size, self.rounds, self.seed = list(ids), batch_size, rounds, seed
        self.flown, self.flown_per_batch = set(flown), flown_per_batch
        self.group, self.pool = group, pool
        self.position_nb = position_neighbours(positions, self.ids, pool) if positions else None
        self.similarity, self.similarity_start_epoch = similarity, similarity_start_epoch

    def wants_similarity(self, epoch: int) -> bool:
        return self.similarity and epoch >= self.similarity_start_epoch and len(self.ids) > self.group

    def plan(self, epoch: int, similarity_nb: Neighbours | None = None) -> list[Batch]:
        # Similarity neighbours, once the model has learnt something, replace the positions (Sample4Geo).
        nb = similarity_nb or self.position_nb
        return plan_batches(self.ids, self.batch_size, self.rounds, self.seed, epoch, flown=self.flown,
                            flown_per_batch=self.flown_per_batch, neighbours=nb, group=self.group, pool=self.pool)

    def n_batches(self) -> int:
        return self.rounds * len(_batch_sizes(len(self.ids), self.batch_size))
