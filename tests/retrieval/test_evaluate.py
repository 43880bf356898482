"""index_tree + evaluate_index end to end on a tiny University-1652-layout tree with a known encoder."""
from __future__ import annotations

import csv
import json
import zipfile

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from retrieval.evaluate import evaluate_index
from retrieval.search import index_tree, load_set
from retrieval.submission import SubmissionError, export_from_evaluation, read_answer

N_QUERY, N_DISTRACT = 5, 7


def pattern_encoder(x: torch.Tensor) -> torch.Tensor:
    """A 4 x 4 colour layout descriptor: two images match when their coarse patterns match."""
    y = F.adaptive_avg_pool2d(x, 4).flatten(1)
    return y - y.mean(dim=1, keepdim=True)


def _write(path, pattern, rng, noise=6.0):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = cv2.resize(pattern, (32, 32), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    img += rng.normal(0, noise, img.shape)
    cv2.imwrite(str(path), np.clip(img, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("u1652")
    rng = np.random.default_rng(0)
    ids = [f"{i:04d}" for i in range(1, N_QUERY + N_DISTRACT + 1)]
    patterns = {b: rng.integers(0, 256, (4, 4, 3)).astype(np.uint8) for b in ids}
    t = root / "test"
    for b in ids:
        _write(t / "gallery_satellite" / b / f"{b}.jpg", patterns[b], rng)
    for b in ids[:N_QUERY]:
        _write(t / "query_satellite" / b / f"{b}.jpg", patterns[b], rng)
        for j in range(2):
            _write(t / "query_street" / b / f"s{j}.jpg", patterns[b], rng)
            _write(t / "query_drone" / b / f"image-{j + 1:02d}.jpeg", patterns[b], rng)
            _write(t / "gallery_drone" / b / f"image-{j + 1:02d}.jpeg", patterns[b], rng)
    # one street query shows a distractor's pattern: it must rank its own tile low
    _write(t / "query_street" / "0001" / "s1.jpg", patterns[ids[-1]], rng)
    return root


def test_index_and_evaluate(tree, tmp_path):
    idx = tmp_path / "index"
    meta = index_tree(pattern_encoder, tree, idx, image_size=32, batch_size=4, device="cpu", index_device="cpu", progress=False)
    assert meta["layout"] == "university"
    assert set(meta["sets"]) == {"query_street", "gallery_satellite", "query_drone", "gallery_drone", "query_satellite"}
    assert meta["sets"]["gallery_satellite"]["n"] == N_QUERY + N_DISTRACT
    gs = load_set(idx, "gallery_satellite")
    assert gs.names[0] == "test/gallery_satellite/0001/0001.jpg" and gs.labels[0] == "0001"
    np.testing.assert_allclose(np.linalg.norm(gs.vectors, axis=1), 1.0, atol=1e-5)
    assert (idx / "gallery_satellite.faiss").is_file() and (idx / "gallery_drone.faiss").is_file()

    out = tmp_path / "eval"
    res = evaluate_index(idx, out, ks=(1, 5, 10), device="cpu", index_device="cpu")
    m = res["tasks"]["street->satellite"]
    assert m["n_queries"] == 2 * N_QUERY and m["n_gallery"] == N_QUERY + N_DISTRACT
    assert m["R@1"] == pytest.approx(90.0)            # all but the street image that shows a distractor
    assert res["tasks"]["drone->satellite"]["R@1"] == pytest.approx(100.0)
    sd = res["tasks"]["satellite->drone"]
    assert sd["R@1"] == pytest.approx(100.0) and sd["AP"] == pytest.approx(100.0)   # both drone images ranked 1, 2
    assert res["faiss"]["street->satellite"]["top10_agreement_with_exact"] == pytest.approx(1.0)
    lo, hi = m["ci95"]["R@1"]              # 9 hits of 10 queries: the interval holds 90 and stays <= 100
    assert 50.0 <= lo < 90.0 <= hi <= 100.0 and sd["ci95"]["AP"] == [100.0, 100.0]

    rows = list(csv.DictReader(open(out / "ranks_street-satellite.csv")))
    assert len(rows) == 2 * N_QUERY
    bad = next(r for r in rows if r["query"] == "test/query_street/0001/s1.jpg")
    assert int(bad["first_match_rank"]) > 1 and float(bad["ap"]) < 1.0
    assert bad["top10"].split(";")[0] == f"test/gallery_satellite/{N_QUERY + N_DISTRACT:04d}/{N_QUERY + N_DISTRACT:04d}.jpg"

    assert (out / "recall_curve.png").stat().st_size > 1000
    assert json.loads((out / "metrics.json").read_text())["tasks"]["street->satellite"]["R@1"] == pytest.approx(90.0)
    # answer: generated order (no query_street_name.txt in the tree), ten names without extension
    assert res["answer"]["written"]
    order = (out / "query_street_name.txt").read_text().split()
    assert order[0] == "0001/s0.jpg" and len(order) == 2 * N_QUERY
    lines = read_answer(out / "answer.zip")
    assert len(lines) == 2 * N_QUERY and all(len(line) == 10 for line in lines)
    assert lines[0][0] == "0001" and lines[1][0] == f"{N_QUERY + N_DISTRACT:04d}"
    with zipfile.ZipFile(out / "answer.zip") as zf:
        assert zf.read("answer.txt") == (out / "answer.txt").read_bytes()
    sub = export_from_evaluation(out, tmp_path / "submit")
    assert sub.name == "answer.zip" and read_answer(sub) == lines


def _flat(root, names, n_gallery, rng):
    for n in names:
        _write(root / "workshop_query_street" / n, rng.integers(0, 256, (4, 4, 3)).astype(np.uint8), rng)
    for i in range(n_gallery):
        _write(root / "workshop_gallery_satellite" / f"G{i:02d}x.jpg", rng.integers(0, 256, (4, 4, 3)).astype(np.uint8), rng)
    (root / "query_street_name.txt").write_text("\n".join(names) + "\n")


def test_uavm_flat_layout_answer_only(tmp_path):
    flat = tmp_path / "uavm"
    rng = np.random.default_rng(3)
    names = ["zq.jpeg", "aq.jpeg", "mq.jpeg"]
    _flat(flat, names, 11, rng)
    idx = tmp_path / "index"
    meta = index_tree(pattern_encoder, flat, idx, image_size=32, device="cpu", index_device="cpu", progress=False)
    assert meta["layout"] == "uavm"
    assert load_set(idx, "query_street").names == [f"workshop_query_street/{n}" for n in names]
    res = evaluate_index(idx, tmp_path / "eval", device="cpu", index_device="cpu")
    assert "note" in res["tasks"]["street->satellite"]
    assert res["answer"]["written"]
    lines = read_answer(tmp_path / "eval" / "answer.zip")
    assert len(lines) == 3 and all(len(set(line)) == 10 and all(g.startswith("G") and "." not in g for g in line) for line in lines)


def test_small_gallery_gives_no_answer(tmp_path):
    flat = tmp_path / "uavm"
    _flat(flat, ["q1.jpg", "q2.jpg"], 9, np.random.default_rng(4))
    idx = tmp_path / "index"
    index_tree(pattern_encoder, flat, idx, image_size=32, device="cpu", index_device="cpu", progress=False)
    res = evaluate_index(idx, tmp_path / "eval", device="cpu", index_device="cpu")
    assert res["answer"]["written"] is False and "fewer than" in res["answer"]["reason"]
    assert not (tmp_path / "eval" / "answer.zip").exists()
    with pytest.raises(SubmissionError, match="fewer than"):
        export_from_evaluation(tmp_path / "eval", tmp_path / "answer.zip")
