"""The University-1652 metrics against hand-worked examples."""
from __future__ import annotations

import numpy as np
import pytest

from retrieval.metrics import average_precision, bootstrap_ci, per_query_scores, rank_all, summarize, top1pct_k


def reference_ap(positions: list[int]) -> float:
    """University-1652's compute_mAP loop, transcribed: trapezoid over the ranks of the true matches."""
    ap, ngood = 0.0, len(positions)
    for i, r in enumerate(sorted(positions)):
        d_recall = 1.0 / ngood
        precision = (i + 1) / (r + 1)
        old_precision = i / r if r != 0 else 1.0
        ap += d_recall * (old_precision + precision) / 2
    return ap


def test_ap_hand_worked():
    # match first: precision 1, old precision 1 -> AP 1
    assert average_precision(np.array([0])) == pytest.approx(1.0)
    # a distractor ranked first, the match second: (0/1 + 1/2) / 2 = 0.25 (not 0.5: the trapezoid rule)
    assert average_precision(np.array([1])) == pytest.approx(0.25)
    # the match ranks last of 5: (0 + 1/5) / 2 = 0.1
    assert average_precision(np.array([4])) == pytest.approx(0.1)
    # three matches at positions 0, 2, 3 (satellite -> drone has many):
    # (1 + 1)/2 + (1/2 + 2/3)/2 + (2/3 + 3/4)/2 = 1 + 0.583333 + 0.708333 = 2.291667; / 3
    assert average_precision(np.array([3, 0, 2])) == pytest.approx(2.2916667 / 3, abs=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(20):
        pos = sorted(rng.choice(50, size=rng.integers(1, 8), replace=False).tolist())
        assert average_precision(np.array(pos)) == pytest.approx(reference_ap(pos))


def test_top1pct_k_follows_the_official_index():
    # University-1652 reads CMC[round(0.01 * N)]: N = 951 (UAVM2025 gallery) -> CMC[10] = R@11
    assert top1pct_k(951) == 11
    assert top1pct_k(20) == 1
    assert top1pct_k(701) == 8


def test_summarize_hand_worked():
    # gallery of 5; q0 matches first, q1 second (distractor first), q2 last
    m = summarize([np.array([0]), np.array([1]), np.array([4])], n_gallery=5, ks=(1, 2, 5))
    assert m.recall[1] == pytest.approx(1 / 3)
    assert m.recall[2] == pytest.approx(2 / 3)
    assert m.recall[5] == pytest.approx(1.0)
    assert m.ap == pytest.approx((1.0 + 0.25 + 0.1) / 3)
    assert m.top1pct_k == 1 and m.recall_top1pct == pytest.approx(1 / 3)
    d = m.to_dict()
    assert d["R@1"] == pytest.approx(100 / 3, abs=1e-3) and d["AP"] == pytest.approx(45.0)


def test_query_without_match_counts_as_miss():
    m = summarize([np.array([0]), np.array([], dtype=np.int64)], n_gallery=3, ks=(1,))
    assert m.n_without_match == 1
    assert m.recall[1] == pytest.approx(0.5)
    assert m.ap == pytest.approx(0.5)


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_rank_all_keeps_distractors_and_many_matches():
    # gallery: g0 building a, g1 building b, g2 distractor d (no query), g3 a second image of a
    gallery = _unit([[1, 0, 0], [0, 1, 0], [0.9, 0.1, 0.6], [0.6, 0.0, 0.8]])
    g_labels = ["a", "b", "d", "a"]
    queries = _unit([[0.8, 0.0, 0.6], [0, 1, 0], [0, 0, 1]])
    q_labels = ["a", "b", "a"]
    r = rank_all(queries, gallery, q_labels, g_labels, k=4)
    # q0 scores: g0 .80, g1 0, g2 .994, g3 .96 -> d, a, a, b: the distractor ranks first
    # q1 scores: g1 1, g2 .09, g0 0, g3 0 (tie kept in gallery order) -> b, d, a, a
    # q2 scores: g3 .80, g2 .55, g0 0, g1 0 -> a, d, a, b
    assert r.top.tolist() == [[2, 3, 0, 1], [1, 2, 0, 3], [3, 2, 0, 1]]
    assert [p.tolist() for p in r.positions] == [[1, 2], [0], [0, 2]]
    m = summarize(r.positions, n_gallery=4, ks=(1, 2))
    assert m.recall[1] == pytest.approx(2 / 3)
    assert m.recall[2] == pytest.approx(1.0)
    # AP q0: (0 + 1/2)/2 + (1/2 + 2/3)/2 = 0.8333 / 2; q1: 1; q2: (1 + 1)/2 + (1/2 + 2/3)/2 = 1.5833 / 2
    assert m.ap == pytest.approx((0.8333333 / 2 + 1 + 1.5833333 / 2) / 3, abs=1e-6)
    np.testing.assert_allclose(r.top_scores[0], [0.99418, 0.96, 0.8, 0.0], atol=1e-4)


def test_rank_all_chunking_matches_one_chunk():
    rng = np.random.default_rng(1)
    g = _unit(rng.normal(size=(40, 8)))
    q = _unit(rng.normal(size=(25, 8)))
    gl = [str(i % 13) for i in range(40)]
    ql = [str(i % 13) for i in range(25)]
    a = rank_all(q, g, ql, gl, k=10)
    b = rank_all(q, g, ql, gl, k=10, max_elements=50)   # one query per chunk
    np.testing.assert_array_equal(a.top, b.top)
    for x, y in zip(a.positions, b.positions):
        np.testing.assert_array_equal(x, y)
    m = summarize(a.positions, 40)
    # CMC is monotone and reaches 1 at the end of the gallery
    assert np.all(np.diff(m.cmc) >= 0) and m.cmc[-1] == pytest.approx(1.0)


def test_per_query_scores_average_to_the_summary():
    positions = [np.array([0]), np.array([3]), np.array([1, 4]), np.array([], dtype=np.int64)]
    s = per_query_scores(positions, ks=(1, 5))
    np.testing.assert_array_equal(s["R@1"], [1, 0, 0, 0])
    np.testing.assert_array_equal(s["R@5"], [1, 1, 1, 0])
    np.testing.assert_allclose(s["AP"], [1.0, 1 / 8, reference_ap([1, 4]), 0.0])   # rank 4 alone: 1 / (2 * 4)
    m = summarize(positions, n_gallery=6, ks=(1, 5))
    assert s["R@5"].mean() == pytest.approx(m.recall[5]) and s["AP"].mean() == pytest.approx(m.ap)


def test_bootstrap_ci_brackets_the_mean_and_narrows_with_more_queries():
    hits = np.array([1.0] * 9 + [0.0] * 81)             # R@1 10% on 90 queries
    lo, hi = bootstrap_ci(hits, seed=1)
    assert lo < 0.10 < hi and 0.03 < lo and hi < 0.18     # binomial sd 3.2 points: about +-6
    lo4, hi4 = bootstrap_ci(np.tile(hits, 4), seed=1)
    assert (hi4 - lo4) < 0.6 * (hi - lo)                  # 4x the queries: about half the width
    assert bootstrap_ci(np.ones(5)) == (1.0, 1.0)         # no spread, no interval
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(np.array([]))
