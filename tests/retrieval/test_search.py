"""faiss indexes against the brute-force torch search."""
from __future__ import annotations

import numpy as np
import pytest

from retrieval.search import build_index, default_nlist, faiss_search, read_index, resolve_kind, torch_search, write_index


def _unit(rng, n, d):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return _unit(rng, 3000, 64), _unit(rng, 200, 64)


def test_flat_faiss_equals_torch_top10(data, tmp_path):
    gallery, queries = data
    index = build_index(gallery, "flat", device="cpu")
    path = write_index(index, tmp_path / "g.faiss")
    index = read_index(path, device="cpu")
    fs, fi = faiss_search(index, queries, 10)
    ts, ti = torch_search(queries, gallery, 10, max_elements=3000 * 7)   # several chunks
    np.testing.assert_array_equal(fi, ti)
    np.testing.assert_allclose(fs, ts, atol=1e-5)
    # and both agree with numpy's full sort
    full = np.argsort(-(queries @ gallery.T), axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(fi, full)


def test_ivf_and_hnsw_find_most_neighbours(data, tmp_path):
    gallery, queries = data
    _, exact = torch_search(queries, gallery, 10)
    nlist = default_nlist(len(gallery))
    assert 1 <= nlist <= len(gallery) // 39
    ivf = build_index(gallery, "ivf", nprobe=nlist, device="cpu")    # visiting every list is exact
    _, ids = faiss_search(read_index(write_index(ivf, tmp_path / "ivf.faiss"), device="cpu", nprobe=nlist), queries, 10)
    np.testing.assert_array_equal(ids, exact)
    hnsw = build_index(gallery, "hnsw", ef_search=256, device="cpu")
    _, ids = faiss_search(read_index(write_index(hnsw, tmp_path / "h.faiss"), device="cpu"), queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)])
    assert recall > 0.95


def test_small_gallery_and_bad_input(tmp_path):
    rng = np.random.default_rng(1)
    g = _unit(rng, 4, 8)
    _, ids = faiss_search(build_index(g, device="cpu"), g, 10)
    assert ids.shape == (4, 4)                       # k clipped to the gallery
    assert ids[:, 0].tolist() == [0, 1, 2, 3]        # each vector finds itself first
    assert resolve_kind("auto", 10) == "flat" and resolve_kind("auto", 200_000) == "ivf"
    with pytest.raises(ValueError, match="expected one of"):
        build_index(g, "lsh")
    with pytest.raises(ValueError, match="NaN"):
        build_index(np.full((3, 8), np.nan, np.float32))
    with pytest.raises(ValueError, match="dimension"):
        faiss_search(build_index(g, device="cpu"), _unit(rng, 2, 5), 1)
    bad = tmp_path / "bad.faiss"
    bad.write_bytes(b"not an index")
    with pytest.raises(ValueError, match="bad.faiss"):
        read_index(bad)
