"""Benchmark: faiss vs. brute-force torch top-10 search on the same L2-normalised embeddings.

Gallery sizes: the demo world (16 satellite tiles, 30 street queries), the UAVM2025 challenge
(951 tiles, 2,579 queries) and 100k synthetic vectors (1,000 queries). Dimension 512 (the PAFA
descriptor). Times are medians over repeats; index build times are reported apart. At 100k the
approximate indexes (IVF, HNSW) are timed too, with their top-10 recall against the exact search.

The vectors have a low-dimensional structure (a 32-d latent Gaussian mapped into 512-d plus noise),
as learned descriptors do; isotropic 512-d Gaussians are the worst case for IVF and HNSW and tell
little about real galleries.

    python bench/bench_search.py [--repeats 5] [--out bench/out/search.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import torch  # noqa: E402

from retrieval.search import build_index, faiss_search, torch_search  # noqa: E402

THREADS = torch.get_num_threads()

DIM = 512
CASES = {"demo": (16, 30), "uavm2025": (951, 2579), "100k": (100_000, 1000)}


LATENT = 32


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _structured(rng: np.random.Generator, n: int, basis: np.ndarray, noise: float = 0.1) -> np.ndarray:
    z = rng.standard_normal((n, basis.shape[0]), dtype=np.float32)
    return _unit(z @ basis + noise * rng.standard_normal((n, basis.shape[1]), dtype=np.float32))


def _median_time(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up (BLAS thread pools, allocations)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run_case(n_gallery: int, n_query: int, repeats: int, approximate: bool, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((LATENT, DIM), dtype=np.float32) / np.sqrt(LATENT)
    gallery = _structured(rng, n_gallery, basis)
    # queries near gallery items, as real queries are, so that top-10 lists are meaningful
    queries = _unit(gallery[rng.integers(0, n_gallery, n_query)] + 0.5 * _structured(rng, n_query, basis))
    k = min(10, n_gallery)
    res: dict = {"gallery": n_gallery, "queries": n_query, "dim": DIM}
    t0 = time.perf_counter()
    flat = build_index(gallery, "flat", device="cpu")
    res["flat_build_s"] = round(time.perf_counter() - t0, 4)
    # Timed at 1 thread and at all threads: on a shared machine OpenMP's spin-waiting makes faiss's
    # multi-threaded numbers swing with other processes' load; one thread is the steady comparison.
    for nt in sorted({1, THREADS}):
        faiss.omp_set_num_threads(nt)
        torch.set_num_threads(nt)
        t_faiss, (_, f_ids) = _median_time(lambda: faiss_search(flat, queries, k), repeats)
        t_torch, (_, t_ids) = _median_time(lambda: torch_search(queries, gallery, k), repeats)
        res[f"faiss_flat_s_{nt}t"] = round(t_faiss, 5)
        res[f"torch_s_{nt}t"] = round(t_torch, 5)
        res[f"speedup_faiss_vs_torch_{nt}t"] = round(t_torch / t_faiss, 2)
    res["same_top10_share"] = float(np.mean(np.all(f_ids == t_ids, axis=1)))
    if approximate:
        faiss.omp_set_num_threads(1)
        for kind, params in (("ivf", {"nprobe": 16}), ("ivf", {"nprobe": 64}), ("hnsw", {"ef_search": 128})):
            name = f"{kind}_{'_'.join(f'{a}{b}' for a, b in params.items())}"
            t0 = time.perf_counter()
            # a lighter HNSW construction than the config default keeps the bench at a few minutes
            index = build_index(gallery, kind, device="cpu", ef_construction=80, **params)
            res[f"{name}_build_s"] = round(time.perf_counter() - t0, 3)
            t, (_, ids) = _median_time(lambda: faiss_search(index, queries, k), repeats)
            res[f"faiss_{name}_s_1t"] = round(t, 5)
            res[f"{name}_recall@10_vs_exact"] = round(float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, t_ids)])), 4)
    return res


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "out" / "search.json")
    args = ap.parse_args(argv)
    results = {"threads": THREADS,
               "repeats": args.repeats, "cases": {}}
    for name, (n_gallery, n_query) in CASES.items():
        results["cases"][name] = run_case(n_gallery, n_query, args.repeats, approximate=n_gallery >= 100_000)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    res = main()
    print(json.dumps(res, indent=2))
    t = res["threads"]
    print(f"\n| case | gallery x queries | faiss flat 1t (s) | torch 1t (s) | faiss flat {t}t (s) | torch {t}t (s) | same top-10 |")
    print("|---|---|---|---|---|---|---|")
    for name, c in res["cases"].items():
        print(f"| {name} | {c['gallery']} x {c['queries']} | {c['faiss_flat_s_1t']} | {c['torch_s_1t']} | "
              f"{c[f'faiss_flat_s_{t}t']} | {c[f'torch_s_{t}t']} | {100 * c['same_top10_share']:.1f}% |")
    big = res["cases"]["100k"]
    print("\n| 100k, 1 thread | search (s) | recall@10 vs exact | build (s) |\n|---|---|---|---|")
    print(f"| flat (exact) | {big['faiss_flat_s_1t']} | 1.0 | {big['flat_build_s']} |")
    for name in ("ivf_nprobe16", "ivf_nprobe64", "hnsw_ef_search128"):
        print(f"| {name} | {big[f'faiss_{name}_s_1t']} | {big[f'{name}_recall@10_vs_exact']} | {big[f'{name}_build_s']} |")
