"""Nearest-neighbour search over L2-normalised embeddings: faiss indexes (flat, IVF, HNSW) and a torch reference.

Inner product on unit vectors is cosine similarity. `IndexFlatIP` is exact and the default for
benchmark galleries; IVF and HNSW trade a little recall for speed on city-scale galleries. The same
code uses faiss on the GPU when the installed faiss has GPU support and sees a device.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import faiss
import numpy as np
import torch

log = logging.getLogger("skylink")

INDEX_KINDS = ("flat", "ivf", "hnsw", "auto")


def faiss_gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _want_gpu(device: str) -> bool:
    if device == "cpu":
        return False
    if device == "cuda":
        if not faiss_gpu_available():
            raise RuntimeError("index.device is 'cuda' but this faiss build has no GPU support or sees no GPU (install faiss-gpu)")
        return True
    if device != "auto":
        raise ValueError(f"index device {device!r}: expected auto, cpu or cuda")
    return faiss_gpu_available()


def _as_float32(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D array of embeddings, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: embeddings hold NaN or inf")
    return np.ascontiguousarray(x, dtype=np.float32)


def resolve_kind(kind: str, n: int, auto_threshold: int = 100_000) -> str:
    """`auto` picks exact flat search below `auto_threshold` vectors and IVF above."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"index kind {kind!r}: expected one of {', '.join(INDEX_KINDS)}")
    if kind == "auto":
        return "flat" if n < auto_threshold else "ivf"
    return kind


def default_nlist(n: int) -> int:
    """About 4 sqrt(N) lists, but at least 39 training points per list as faiss's k-means asks."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def build_index(
    vectors: np.ndarray,
    kind: str = "flat",
    *,
    nlist: int = 0,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    device: str = "auto",
    seed: int = 0,
) -> faiss.Index:
    """An inner-product index over `vectors` (N x D float32, L2-normalised).

    `nlist=0` chooses the number of IVF lists from N. HNSW has no faiss GPU implementation and stays
    on the CPU; flat and IVF move to the GPU when `device` allows it.
    """
    x = _as_float32(vectors, "build_index")
    n, d = x.shape
    if n == 0:
        raise ValueError("build_index: the gallery is empty")
    kind = resolve_kind(kind, n)
    if kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(d)
    elif kind == "ivf":
        lists = nlist or default_nlist(n)
        if lists > n:
            raise ValueError(f"build_index: nlist={lists} is larger than the gallery ({n} vectors)")
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        index.nprobe = min(nprobe, lists)
    else:
        index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = ef_search
    if kind != "hnsw" and _want_gpu(device):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    if not index.is_trained:
        index.train(x)
    index.add(x)
    log.debug("built %s index of %d x %d (%s)", kind, n, d, type(index).__name__)
    return index


def write_index(index: faiss.Index, path: Path) -> Path:
    """Write an index (a GPU index is copied to the CPU first); the write is atomic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if hasattr(faiss, "index_gpu_to_cpu") and "Gpu" in type(index).__name__:
        index = faiss.index_gpu_to_cpu(index)
    tmp = path.with_name(f".{path.name}.tmp")
    faiss.write_index(index, str(tmp))
    tmp.replace(path)
    return path


def read_index(path: Path, *, device: str = "auto", nprobe: int | None = None, ef_search: int | None = None) -> faiss.Index:
    """Read an index written by `write_index`, optionally onto the GPU, with its search parameters set."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: faiss index file not found")
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as e:
        raise ValueError(f"{path}: not a readable faiss index ({str(e).splitlines()[0]})") from None
    ivf = faiss.try_extract_index_ivf(index)
    if ivf is not None and nprobe is not None:
        ivf.nprobe = min(nprobe, ivf.nlist)
    if isinstance(index, faiss.IndexHNSW) and ef_search is not None:
        index.hnsw.efSearch = ef_search
    if not isinstance(index, faiss.IndexHNSW) and _want_gpu(device):
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    return index


def faiss_search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, gallery indices), each Q x k, best first. k is clipped to the gallery size."""
    q = _as_float32(queries, "faiss_search")
    if q.shape[1] != index.d:
        raise ValueError(f"faiss_search: queries have dimension {q.shape[1]}, the index {index.d}")
    k = min(k, index.ntotal)
    scores, ids = index.search(q, k)
    return scores, ids.astype(np.int64)


def torch_search(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    *,
    device: str = "cpu",
    max_elements: int = 1 << 24,
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top-k by a chunked matrix product in torch: the reference that faiss is checked against."""
    q = _as_float32(queries, "torch_search queries")
    g = _as_float32(gallery, "torch_search gallery")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"torch_search: queries have dimension {q.shape[1]}, the gallery {g.shape[1]}")
    k = min(k, len(g))
    dev = torch.device(device)
    gt = torch.from_numpy(g).to(dev)
    chunk = max(1, max_elements // max(len(g), 1))
    all_scores, all_ids = [], []
    with torch.no_grad():
        for s in range(0, len(q), chunk):
            sims = torch.from_numpy(q[s:s + chunk]).to(dev) @ gt.T
            top = torch.topk(sims, k, dim=1, largest=True, sorted=True)
            all_scores.append(top.values.cpu().numpy())
            all_ids.append(top.indices.cpu().numpy())
    if not all_ids:
        return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
    return np.concatenate(all_scores), np.concatenate(all_ids).astype(np.int64)
