"""Batch sampling: unique ids, flown buildings gathered for the 3D term, hard negatives placed together."""
from __future__ import annotations

import json
from collections import Counter
from itertools import combinations

import numpy as np
import pytest

from retrieval.config import TrainConfig
from retrieval.sampling import (
    BatchPlanner,
    batch_stats,
    grouped_order,
    plan_batches,
    position_neighbours,
    read_positions,
    similarity_neighbours,
)
from retrieval.train import _planner

IDS = [f"{i:04d}" for i in range(180)]


def _check_rounds(batches, ids, rounds):
    assert all(len({b for b, _ in batch}) == len(batch) for batch in batches)      # unique ids per batch
    assert min(len(b) for b in batches) >= 2
    assert Counter(b for batch in batches for b, _ in batch) == {i: rounds for i in ids}


@pytest.mark.parametrize("n_flown", [16, 5, 64, 180])
def test_flown_buildings_are_gathered(n_flown):
    """Defect: random batches over 180 buildings with 16 flown held 2-3 flown buildings each, so the 3D
    InfoNCE was skipped or a 2-way choice in half the batches."""
    flown = set(np.random.default_rng(0).choice(IDS, n_flown, replace=False))
    batches = plan_batches(IDS, 16, 3, seed=1, epoch=0, flown=flown, flown_per_batch=8)
    _check_rounds(batches, IDS, 3)
    counts = [sum(b in flown for b, _ in batch) for batch in batches]
    want = min(8, n_flown)
    assert all(c == 0 or c >= want for c in counts), counts
    assert sum(counts) == 3 * n_flown
    stats = batch_stats(batches, flown)
    assert stats["flown_per_3d_batch"] >= want
    if n_flown == 180:
        assert stats["batches_with_3d"] == 1.0


def test_plan_is_deterministic_and_changes_per_epoch():
    flown = set(IDS[:16])
    a = plan_batches(IDS, 16, 2, seed=0, epoch=3, flown=flown)
    assert a == plan_batches(IDS, 16, 2, seed=0, epoch=3, flown=flown)
    assert a != plan_batches(IDS, 16, 2, seed=0, epoch=4, flown=flown)


def test_similar_buildings_land_in_the_same_batch():
    """Dynamic similarity sampling: clusters of 4 buildings the model confuses share a batch."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(45, 32))
    feats = np.repeat(centres, 4, axis=0) + 0.05 * rng.normal(size=(180, 32))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    street = feats + 0.02 * rng.normal(size=feats.shape)
    street /= np.linalg.norm(street, axis=1, keepdims=True)
    nb = similarity_neighbours(IDS, street, feats, k=3)
    assert all(set(nb[IDS[i]]) == {IDS[j] for j in range(4 * (i // 4), 4 * (i // 4) + 4)} - {IDS[i]}
               for i in range(180))

    def together(batches) -> float:
        where = {b: k for k, batch in enumerate(batches) for b, r in batch if r == 0}
        pairs = [(IDS[4 * c + i], IDS[4 * c + j]) for c in range(45) for i, j in combinations(range(4), 2)]
        return float(np.mean([where[a] == where[b] for a, b in pairs]))

    hard = plan_batches(IDS, 16, 1, seed=0, epoch=1, neighbours=nb, group=4, pool=3)
    plain = plan_batches(IDS, 16, 1, seed=0, epoch=1)
    _check_rounds(hard, IDS, 1)
    assert together(hard) > 0.6 and together(plain) < 0.2


def test_grouped_order_is_a_permutation():
    rng = np.random.default_rng(1)
    ids = IDS[:37]
    nb = {b: list(reversed(ids)) for b in ids}
    order = grouped_order(ids, nb, rng, group=5, pool=8)
    assert sorted(order) == sorted(ids)


def test_neighbour_sampling_reads_an_optional_positions_file(tmp_path):
    """Positions are optional input of the dataset (never the synthetic world's ground truth)."""
    ids = IDS[:24]
    pos = {b: [float(i // 4) * 1000.0, float(i % 4)] for i, b in enumerate(ids)}    # blocks of 4 close buildings
    (tmp_path / "positions.json").write_text(json.dumps(pos))
    read = read_positions(tmp_path / "positions.json")
    assert set(position_neighbours(read, ids, 3)[ids[0]]) == set(ids[1:4])
    cfg = TrainConfig(batch_size=8, samples_per_building=1, similarity_sampling=False, hard_negative_pool=3)
    planner = _planner(cfg, tmp_path, ids, set())
    assert planner.position_nb is not None and not planner.wants_similarity(5)
    batches = planner.plan(0)
    where = {b: k for k, batch in enumerate(batches) for b, _ in batch}
    assert np.mean([where[ids[4 * c]] == where[ids[4 * c + j]] for c in range(6) for j in (1, 2, 3)]) > 0.6
    # no file: neighbour sampling is skipped; switched off: the file is not read
    assert _planner(cfg, tmp_path / "nope", ids, set()).position_nb is None
    off = TrainConfig(batch_size=8, neighbour_sampling=False, similarity_sampling=False)
    assert _planner(off, tmp_path, ids, set()).position_nb is None
    (tmp_path / "bad.json").write_text(json.dumps({"0001": "north"}))
    with pytest.raises(ValueError, match="bad.json"):
        read_positions(tmp_path / "bad.json")


def test_planner_batch_count_is_fixed():
    planner = BatchPlanner(IDS, 16, 2, 0, flown=set(IDS[:20]), similarity=True, similarity_start_epoch=1)
    assert not planner.wants_similarity(0) and planner.wants_similarity(1)
    assert len(planner.plan(0)) == planner.n_batches() == 2 * 12
