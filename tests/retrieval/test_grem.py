"""GREM: ranking google images against a building's street images, the kept share, the truth check."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrieval.grem import enhance_building, keep_count, kept_quality, read_kept, score_google, write_grem


def pattern_encoder(x: torch.Tensor) -> torch.Tensor:
    y = F.adaptive_avg_pool2d(x, 4).flatten(1)
    return y - y.mean(dim=1, keepdim=True)


def _write(path, pattern, rng, noise=8.0, size=32):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.resize(pattern, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    img += rng.normal(0, noise, img.shape)
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))
    return path


def test_keep_count():
    assert keep_count(4, 0.5) == 2
    assert keep_count(5, 0.5) == 3
    assert keep_count(1, 0.5) == 1
    assert keep_count(10, 0.3) == 3
    assert keep_count(0, 0.5) == 0 and keep_count(3, 0.0) == 0 and keep_count(3, 1.0) == 3
    with pytest.raises(ValueError, match="keep_share"):
        keep_count(3, 1.5)


def test_score_modes_hand_worked():
    s = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    g = np.array([[1.0, 0.0], [np.sqrt(0.5), np.sqrt(0.5)]], np.float32)
    # mean: similarity to the normalised centroid (0.7071, 0.7071)
    np.testing.assert_allclose(score_google(s, g, "mean"), [np.sqrt(0.5), 1.0], atol=1e-6)
    # max: best single street image
    np.testing.assert_allclose(score_google(s, g, "max"), [1.0, np.sqrt(0.5)], atol=1e-6)


@pytest.fixture()
def building(tmp_path):
    rng = np.random.default_rng(0)
    own, other = (rng.integers(0, 256, (4, 4, 3)).astype(np.uint8) for _ in range(2))
    root = tmp_path / "tree"
    street = [_write(root / "train" / "street" / "0001" / f"s{i}.jpg", own, rng) for i in range(3)]
    right = [_write(root / "train" / "google" / "0001" / f"r{i}.jpg", own, rng) for i in range(3)]
    wrong = [_write(root / "train" / "google" / "0001" / f"w{i}.jpg", other, rng) for i in range(3)]
    return root, street, right, wrong


@pytest.mark.parametrize("score", ["mean", "max"])
def test_enhance_keeps_the_right_images(building, tmp_path, score):
    root, street, right, wrong = building
    google = sorted(right + wrong)
    res = enhance_building(street, google, pattern_encoder, 0.5, root=root, score=score, image_size=32, device="cpu")
    rel = lambda ps: sorted(p.relative_to(root).as_posix() for p in ps)  # noqa: E731
    assert sorted(res["kept"]) == rel(right)
    assert sorted(res["dropped"]) == rel(wrong)
    scores = [s["score"] for s in res["scores"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 6
    assert res["kept"][0] == "train/google/0001/" + res["scores"][0]["path"].split("/")[-1]
    write_grem(tmp_path / "enh" / "0001", res)
    kept = read_kept(tmp_path / "enh", root)
    assert sorted(kept["0001"]) == sorted(right)
    truth = {p.relative_to(root).as_posix(): "0001" for p in right} | {p.relative_to(root).as_posix(): "0002" for p in wrong}
    q = kept_quality({"0001": json.loads((tmp_path / "enh" / "0001" / "grem.json").read_text())}, truth)
    assert q["precision"] == 1.0 and q["recall"] == 1.0 and q["precision_keep_all"] == 0.5
    assert q["per_building"]["0001"]["kept_right"] == 3


def test_quality_counts_mistakes():
    res = {"0001": {"kept": ["a", "b"], "dropped": ["c", "d"], "scores": [{"path": p, "score": 0} for p in "abcd"]},
           "0002": {"kept": [], "dropped": [], "scores": []}}
    truth = {"a": "0001", "b": "0003", "c": "0001", "d": "0001"}
    q = kept_quality(res, truth)
    assert q["precision"] == 0.5            # a right, b wrong
    assert q["recall"] == pytest.approx(1 / 3, abs=1e-4)   # a of a, c, d
    assert q["per_building"]["0002"]["precision"] is None
    with pytest.raises(ValueError, match="google_truth.json has no entry for"):
        kept_quality({"0001": {"kept": ["z"], "dropped": [], "scores": [{"path": "z", "score": 0}]}}, truth)


def test_edge_cases(building):
    root, street, right, wrong = building
    assert enhance_building(street, [], pattern_encoder, 0.5, root=root)["kept"] == []
    res = enhance_building([], right, pattern_encoder, 0.5, root=root)
    assert res["kept"] == [] and len(res["dropped"]) == 3 and "note" in res


def test_frozen_encoder_prefers_views_of_the_same_scene(tmp_path):
    """The real pretrained encoder: shifted, re-exposed crops of the street scene beat other scenes."""
    from retrieval.backbone import frozen_encoder

    rng = np.random.default_rng(1)

    def scene(seed):
        r = np.random.default_rng(seed)
        img = np.full((96, 128, 3), r.integers(60, 200, 3), np.uint8)
        for _ in range(12):   # blocks of facade-like rectangles
            x, y = r.integers(0, 110), r.integers(0, 80)
            cv2.rectangle(img, (int(x), int(y)), (int(x + r.integers(8, 30)), int(y + r.integers(8, 30))),
                          tuple(int(c) for c in r.integers(0, 255, 3)), -1)
        return img

    def view(img, dx, gain):
        crop = img[:, dx:dx + 96].astype(np.float32) * gain + rng.normal(0, 4, (96, 96, 3))
        return np.clip(crop, 0, 255).astype(np.uint8)

    own = scene(10)
    street, google = [], []
    for i, (dx, g) in enumerate([(0, 1.0), (16, 0.9), (32, 1.1)]):
        street.append(tmp_path / f"s{i}.png")
        cv2.imwrite(str(street[-1]), view(own, dx, g))
    right = []
    for i, (dx, g) in enumerate([(8, 1.05), (24, 0.95)]):
        right.append(tmp_path / f"r{i}.png")
        cv2.imwrite(str(right[-1]), view(own, dx, g))
    wrong = []
    for i in range(2):
        wrong.append(tmp_path / f"w{i}.png")
        cv2.imwrite(str(wrong[-1]), view(scene(20 + i), 16, 1.0))
    google = wrong + right
    res = enhance_building(street, google, frozen_encoder("cpu"), 0.5, root=tmp_path, image_size=160, device="cpu")
    assert sorted(res["kept"]) == ["r0.png", "r1.png"]
