"""Nearest-neighbour search over L2-normalised embeddings: faiss indexes (flat, IVF, HNSW) and a torch reference.

Inner product on unit vectors is cosine similarity. `IndexFlatIP` is exact and the default for
benchmark galleries; IVF and HNSW trade a little recall for speed on city-scale galleries. The same
code uses faiss on the GPU when the installed faiss has GPU support and sees a device.
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass
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


# --- index directories: embeddings (NPY) + names per image set, one faiss index per gallery -------------

# Image sets of a test split, named after their University-1652 folders. `branch` is the model branch.
SETS = {
    "query_street": "street",
    "gallery_satellite": "satellite",
    "query_drone": "drone",
    "gallery_drone": "drone",
    "query_satellite": "satellite",
}
GALLERIES = ("gallery_satellite", "gallery_drone")
INDEX_META = "index.json"


@dataclass
class EmbeddingSet:
    """One image set's embeddings with the names (paths relative to the data root) and labels (building ids)."""

    name: str
    vectors: np.ndarray                 # N x D float32, L2-normalised
    names: list[str]
    labels: list[str | None]            # None in the name-masked UAVM2025 layout

    @property
    def labelled(self) -> bool:
        return bool(self.labels) and all(lab is not None for lab in self.labels)


def save_set(index_dir: Path, s: EmbeddingSet) -> None:
    """Write `<name>.npy` and `<name>.json` ({"names", "labels"}), each atomically."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    if len(s.vectors) != len(s.names) or len(s.names) != len(s.labels):
        raise ValueError(f"set {s.name}: {len(s.vectors)} vectors, {len(s.names)} names, {len(s.labels)} labels")
    tmp = index_dir / f".{s.name}.npy.tmp"
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(s.vectors, dtype=np.float32))
    tmp.replace(index_dir / f"{s.name}.npy")
    tmp = index_dir / f".{s.name}.json.tmp"
    tmp.write_text(json.dumps({"names": s.names, "labels": s.labels}) + "\n")
    tmp.replace(index_dir / f"{s.name}.json")


def load_set(index_dir: Path, name: str) -> EmbeddingSet:
    index_dir = Path(index_dir)
    npy, js = index_dir / f"{name}.npy", index_dir / f"{name}.json"
    for p in (npy, js):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: embedding set {name!r} not found (run the index stage)")
    try:
        meta = json.loads(js.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{js}: not valid JSON ({e})") from None
    vectors = np.load(npy)
    if vectors.ndim != 2 or len(vectors) != len(meta.get("names", [])):
        raise ValueError(f"{npy}: {vectors.shape} embeddings do not match the {len(meta.get('names', []))} names of {js.name}")
    return EmbeddingSet(name, vectors.astype(np.float32, copy=False), list(meta["names"]), list(meta["labels"]))


def collect_sets(tree: Path) -> tuple[str, dict[str, list[tuple[Path, str | None]]], Path | None]:
    """The test image sets of a data tree: (layout, {set name: [(path, building id)]}, query order file).

    University-1652 layout: every test folder present, images sorted by building and name. UAVM2025
    flat layout: `query_street` in the order of `query_street_name.txt` (or sorted names when there is
    none) and `gallery_satellite`, without labels.
    """
    from retrieval.dataset import read_tree
    from retrieval.submission import QUERY_ORDER, find_flat_layout, read_flat_layout

    tree = Path(tree)
    if find_flat_layout(tree) is not None:
        flat = read_flat_layout(tree)
        sets = {"query_street": [(p, None) for p in flat.query_paths],
                "gallery_satellite": [(p, None) for p in flat.gallery_paths]}
        return "uavm", sets, flat.query_order_file
    sets: dict[str, list[tuple[Path, str | None]]] = {}
    for r in read_tree(tree):
        if r.split != "test":
            continue
        name = f"{r.role}_{r.view}"
        if name in SETS:
            sets.setdefault(name, []).append((r.path, r.building))
    order = next((p for p in (tree / QUERY_ORDER, tree / "test" / QUERY_ORDER) if p.is_file()), None)
    return "university", sets, order


def index_tree(
    model,
    tree: Path,
    out: Path,
    *,
    kind: str = "flat",
    image_size: int = 224,
    batch_size: int = 32,
    device: str = "auto",
    index_device: str = "auto",
    auto_threshold: int = 100_000,
    nlist: int = 0,
    nprobe: int = 16,
    hnsw_m: int = 32,
    ef_construction: int = 200,
    ef_search: int = 128,
    progress: bool = True,
    workdir: Path | None = None,
) -> dict:
    """Embed every test set of `tree` with `model`, write the sets and a faiss index per gallery into `out`.

    Returns the content of `out/index.json`: layout, data root, query order file (relative to
    `workdir`, by default `out`'s parent, when inside it; see retrieval.paths), and per set its
    size, dimension and branch, per gallery its index kind and file.
    """
    from retrieval.embed import embed_paths

    from retrieval.paths import record_path

    tree, out = Path(tree), Path(out)
    workdir = Path(workdir) if workdir is not None else out.parent
    layout, sets, order = collect_sets(tree)
    if "query_street" not in sets or "gallery_satellite" not in sets:
        raise ValueError(f"{tree}: no test/query_street and test/gallery_satellite images to index")
    # paths inside the work dir are kept relative to it, so a moved or copied work dir still reads
    meta: dict = {"layout": layout, "root": record_path(tree, workdir),
                  "query_order": record_path(order, workdir) if order else None, "sets": {}, "indexes": {}}
    for name, items in sets.items():
        branch = SETS[name]
        t0 = time.time()
        vectors = embed_paths(model, [p for p, _ in items], branch=branch, image_size=image_size,
                              batch_size=batch_size, device=device, progress=progress)
        names = [p.relative_to(tree).as_posix() for p, _ in items]
        save_set(out, EmbeddingSet(name, vectors, names, [lab for _, lab in items]))
        seconds = time.time() - t0
        meta["sets"][name] = {"n": len(names), "dim": int(vectors.shape[1]), "branch": branch,
                              "images_per_s": round(len(names) / max(seconds, 1e-9), 2)}
        log.info("index: embedded %d %s images (%.1f img/s)", len(names), name, len(names) / max(seconds, 1e-9))
    for gallery in GALLERIES:
        if gallery not in sets:
            continue
        vectors = load_set(out, gallery).vectors
        resolved = resolve_kind(kind, len(vectors), auto_threshold)
        t0 = time.time()
        index = build_index(vectors, resolved, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m,
                            ef_construction=ef_construction, ef_search=ef_search, device=index_device)
        write_index(index, out / f"{gallery}.faiss")
        meta["indexes"][gallery] = {"kind": resolved, "file": f"{gallery}.faiss", "ntotal": int(index.ntotal),
                                    "gpu": "Gpu" in type(index).__name__, "build_s": round(time.time() - t0, 4)}
    tmp = out / f".{INDEX_META}.tmp"
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(out / INDEX_META)
    return meta


def read_index_meta(index_dir: Path) -> dict:
    p = Path(index_dir) / INDEX_META
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not found (run the index stage)")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{p}: not valid JSON ({e})") from None
