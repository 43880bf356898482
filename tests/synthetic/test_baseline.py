"""The colour-histogram baseline runs on a generated tree and ranks by the documented protocol."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from synthetic.baseline import colour_histogram_recall


def test_colour_histogram_recall(small_world: Path, tmp_path: Path):
    r = colour_histogram_recall(small_world)
    n_street = len(list((small_world / "test" / "query_street").rglob("*.jpg")))
    n_gallery = len([p for p in (small_world / "test" / "gallery_satellite").iterdir() if p.is_dir()])
    assert r["queries"] == n_street and r["gallery"] == n_gallery
    assert 0.0 <= r["R@1"] <= r["R@5"] <= r["R@10"] <= 1.0
    assert r["R@5"] == 1.0  # the gallery holds fewer than 5 tiles
    assert r["chance_R@1"] == pytest.approx(1 / n_gallery)
    # a query whose own street image is its satellite tile is matched first
    fake = tmp_path / "fake"
    shutil.copytree(small_world / "test", fake / "test")
    for q in (fake / "test" / "query_street").iterdir():
        for p in q.glob("*.jpg"):
            shutil.copy(fake / "test" / "gallery_satellite" / q.name / f"{q.name}.jpg", p)
    assert colour_histogram_recall(fake)["R@1"] == 1.0
