"""The pretrained-encoder floor: real EfficientNet-Lite0 features on a small University-1652-layout tree."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from retrieval.baselines import pretrained_recall


def _scene(rng: np.random.Generator, kind: int) -> np.ndarray:
    """Distinct structured images (stripes, checkers, blobs) that ImageNet features tell apart."""
    img = np.full((96, 96, 3), rng.integers(40, 200, 3), np.uint8)
    if kind == 0:
        img[:, ::12] = rng.integers(0, 255, 3)
    elif kind == 1:
        img[(np.indices((96, 96)).sum(0) // 16) % 2 == 0] = rng.integers(0, 255, 3)
    else:
        for _ in range(6):
            cv2.circle(img, tuple(int(v) for v in rng.integers(10, 86, 2)), 10, rng.integers(0, 255, 3).tolist(), -1)
    return img


def test_identical_views_rank_first_and_distractors_count(tmp_path):
    rng = np.random.default_rng(0)
    ids = ["0001", "0002", "0003", "0004", "0005"]          # 0004, 0005: distractor tiles without queries
    for i, b in enumerate(ids):
        img = _scene(rng, i % 3)
        (tmp_path / "test" / "gallery_satellite" / b).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "test" / "gallery_satellite" / b / f"{b}.png"), img)
        if i < 3:
            (tmp_path / "test" / "query_street" / b).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / "test" / "query_street" / b / "street-01.png"), img)
    res = pretrained_recall(tmp_path, image_size=64, device="cpu")
    assert (res["queries"], res["gallery"]) == (3, 5)
    assert res["R@1"] == pytest.approx(1.0) and res["AP"] == pytest.approx(1.0)


def test_missing_folder_names_the_path(tmp_path):
    (tmp_path / "test" / "query_street").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="gallery_satellite"):
        pretrained_recall(tmp_path, device="cpu")


def test_drone_queries_use_the_drone_folder(tmp_path):
    rng = np.random.default_rng(1)
    for i, b in enumerate(["0001", "0002", "0003"]):
        img = _scene(rng, i)
        for sub, name in (("gallery_satellite", f"{b}.png"), ("query_drone", "image-01.png")):
            (tmp_path / "test" / sub / b).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / "test" / sub / b / name), img)
    assert pretrained_recall(tmp_path, image_size=64, device="cpu", query="drone")["queries"] == 3
    with pytest.raises(FileNotFoundError, match="query_street"):
        pretrained_recall(tmp_path, image_size=64, device="cpu")
