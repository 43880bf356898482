"""Pairs for spiral orbits: capture-order neighbours and VLAD-retrieved loop closures; matcher choice."""
from __future__ import annotations

import numpy as np

from reconstruction.config import ReconstructConfig
from reconstruction.pairs import retrieval_pairs, sequential_pairs, vlad_descriptors
from reconstruction.sfm import pick_matcher


def test_sequential_pairs_window():
    names = [f"image-{i:02d}.jpeg" for i in range(1, 11)]
    pairs = sequential_pairs(names, overlap=3)
    assert len(pairs) == 9 + 8 + 7
    assert ("image-01.jpeg", "image-04.jpeg") in pairs and ("image-01.jpeg", "image-05.jpeg") not in pairs


def test_retrieval_finds_the_same_facade_one_turn_later():
    # 36 images on 2 turns of 18: image i and i+18 face the same facade (same local features),
    # neighbouring positions share part of them.
    rng = np.random.default_rng(0)
    places = rng.integers(0, 256, size=(18, 300, 128)).astype(np.uint8)
    descs = []
    for i in range(36):
        p = i % 18
        mix = np.concatenate([places[p][:200], places[(p + 1) % 18][:100]])
        noise = rng.integers(-6, 7, size=mix.shape)
        descs.append(np.clip(mix.astype(int) + noise, 0, 255).astype(np.uint8))
    names = [f"image-{i + 1:02d}.jpeg" for i in range(36)]
    pairs = retrieval_pairs(names, vlad_descriptors(descs, k=16), k=1, min_index_gap=7)
    for i in range(18):
        assert (names[i], names[i + 18]) in pairs, names[i]
    assert all(abs(names.index(a) - names.index(b)) >= 7 for a, b in pairs)


def test_auto_matcher_choice():
    cfg = ReconstructConfig()
    assert pick_matcher(cfg, 54, has_priors=True) == "spatial"
    assert pick_matcher(cfg, 20, has_priors=False) == "exhaustive"
    assert pick_matcher(cfg, 18, has_priors=True) == "exhaustive"  # a short survey: every pair
    assert pick_matcher(cfg, 54, has_priors=False) == "sequential"
    assert pick_matcher(ReconstructConfig(matcher="spatial"), 54, has_priors=False) == "sequential"
