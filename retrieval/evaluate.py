"""Evaluation of an index directory: University-1652 metrics per task, per-query ranks, plots and the
UAVM2025 answer.

Metrics come from the exact ranking of the whole gallery (distractors included), which the protocol
defines; the answer and the served top-K come from the faiss index, and the share of queries where the
two top-K lists agree is reported so an approximate index (IVF, HNSW) shows what it costs.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from retrieval.metrics import RetrievalMetrics, bootstrap_ci, per_query_scores, rank_all, summarize
from retrieval.search import EmbeddingSet, faiss_search, load_set, read_index, read_index_meta

log = logging.getLogger("skylink")

# task name -> (query set, gallery set); street -> satellite is the challenge's task
TASKS = {
    "street->satellite": ("query_street", "gallery_satellite"),
    "drone->satellite": ("query_drone", "gallery_satellite"),
    "satellite->drone": ("query_satellite", "gallery_drone"),
}
ANSWER_TASK = "street->satellite"


@dataclass
class TaskResult:
    name: str
    metrics: RetrievalMetrics | None        # None when the sets carry no labels (name-masked UAVM2025)
    query: EmbeddingSet
    gallery: EmbeddingSet
    top: np.ndarray                         # Q x k served ranking (faiss), gallery indices
    agreement: float | None                 # share of queries whose faiss top-k equals the exact top-k
    positions: list[np.ndarray] | None = None   # per query: 0-based positions of its true matches (exact)
    aps: list[float] | None = None
    scores: dict[str, np.ndarray] | None = None  # per query: hit at each K and AP (metrics.per_query_scores)


def _slug(task: str) -> str:
    return task.replace("->", "-")


def write_ranks_csv(path: Path, res: TaskResult) -> Path:
    """One row per query: name, building, 1-based rank of the first true match, matches, AP, the top-k names."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    k = res.top.shape[1] if res.top.ndim == 2 else 0
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["query", "building", "first_match_rank", "n_matches", "ap", f"top{k}"])
        for i, q in enumerate(res.query.names):
            pos = res.positions[i] if res.positions is not None else None
            first = int(pos[0]) + 1 if pos is not None and len(pos) else ""
            n_match = len(pos) if pos is not None else ""
            ap = f"{res.aps[i]:.6f}" if res.aps is not None else ""
            top = ";".join(res.gallery.names[j] for j in res.top[i] if j >= 0)
            w.writerow([q, res.query.labels[i] or "", first, n_match, ap, top])
    tmp.replace(path)
    return path


def evaluate_task(
    index_dir: Path,
    task: str,
    *,
    ks: Sequence[int] = (1, 5, 10),
    top_k: int = 10,
    device: str = "cpu",
    index_device: str = "auto",
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> TaskResult:
    """Score one task of an index dir (metrics only when both sets carry building labels)."""
    qname, gname = TASKS[task]
    query, gallery = load_set(index_dir, qname), load_set(index_dir, gname)
    index = read_index(Path(index_dir) / f"{gname}.faiss", device=index_device, nprobe=nprobe, ef_search=ef_search)
    if index.ntotal != len(gallery.names) or index.d != gallery.vectors.shape[1]:
        raise ValueError(f"{Path(index_dir) / (gname + '.faiss')}: index of {index.ntotal} x {index.d} does not match "
                         f"the {len(gallery.names)} x {gallery.vectors.shape[1]} embeddings of {gname}")
    _, top = faiss_search(index, query.vectors, top_k)
    if not (query.labelled and gallery.labelled):
        return TaskResult(task, None, query, gallery, top, None)
    ranking = rank_all(query.vectors, gallery.vectors, query.labels, gallery.labels, k=top_k, device=device)
    metrics = summarize(ranking.positions, len(gallery.names), ks)
    agreement = float(np.mean(np.all(ranking.top == top, axis=1))) if len(top) else None
    scores = per_query_scores(ranking.positions, ks)
    return TaskResult(task, metrics, query, gallery, top, agreement, ranking.positions, scores["AP"].tolist(), scores)


def answer_names(meta: dict, query: EmbeddingSet, out_dir: Path,
                 workdir: Path | None = None) -> tuple[list[str], list[int], Path, Path]:
    """Query names in the challenge order, the matching rows of the query set, the order file and the query folder.

    With a `query_street_name.txt` in the tree its order is used; otherwise one is generated from the
    query set's order (names relative to the query folder) and written into `out_dir`. Relative paths
    in `meta` are read against `workdir` (default: `out_dir`'s parent).
    """
    from retrieval.paths import existing_path, recorded_path
    from retrieval.submission import QUERY_ORDER, SubmissionError, generate_query_order, read_query_order

    workdir = Path(workdir) if workdir is not None else Path(out_dir).parent
    try:  # without the query images there is no answer to check, but the metrics stand
        root = existing_path(meta["root"], workdir, "data root of the index")
    except FileNotFoundError as e:
        raise SubmissionError(str(e)) from None
    # names are relative to the data root; the challenge names queries relative to the query folder
    prefix = Path(query.names[0]).parent if meta["layout"] == "uavm" else Path("test") / "query_street"
    folder = root / prefix
    rel = [Path(n).relative_to(prefix).as_posix() for n in query.names]
    if meta.get("query_order"):
        order_file = recorded_path(meta["query_order"], workdir)
        names = read_query_order(order_file)
        lookup: dict[str, int] = {}
        for i, r in enumerate(rel):
            for key in (r, Path(r).name, str(Path(r).with_suffix(""))):
                lookup.setdefault(key, i)
        missing = [n for n in names if n not in lookup]
        if missing:
            raise SubmissionError(f"{order_file}: lists {len(missing)} queries that were not indexed (e.g. {missing[0]})")
        rows = [lookup[n] for n in names]
    else:
        names, rows = rel, list(range(len(rel)))
        order_file = generate_query_order(names, Path(out_dir) / QUERY_ORDER)
    return names, rows, order_file, folder


def evaluate_index(
    index_dir: Path,
    out_dir: Path,
    *,
    ks: Sequence[int] = (1, 5, 10),
    top_k: int = 10,
    curve_max_k: int = 50,
    device: str = "cpu",
    index_device: str = "auto",
    write_answer: bool = True,
    workdir: Path | None = None,
) -> dict:
    """Evaluate every task whose sets the index dir holds; write metrics.json, ranks CSVs, plots, answer.

    Paths are recorded relative to `workdir` (default: `out_dir`'s parent) when inside it, and
    relative paths of the index are read against it (retrieval.paths).
    Returns the metrics dict (also written to `out_dir/metrics.json`).
    """
    from retrieval.paths import record_path
    from retrieval.plots import plot_rank_histogram, plot_recall_curve
    from retrieval.submission import SubmissionError, export_answer

    index_dir, out_dir = Path(index_dir), Path(out_dir)
    workdir = Path(workdir) if workdir is not None else out_dir.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = read_index_meta(index_dir)
    result: dict = {"layout": meta["layout"], "tasks": {}, "faiss": {}, "files": {}}
    curves: dict[str, np.ndarray] = {}
    first_ranks: dict[str, list[int]] = {}
    street: TaskResult | None = None
    for task, (qname, gname) in TASKS.items():
        if qname not in meta["sets"] or gname not in meta["sets"]:
            continue
        res = evaluate_task(index_dir, task, ks=ks, top_k=top_k, device=device, index_device=index_device)
        csv_path = write_ranks_csv(out_dir / f"ranks_{_slug(task)}.csv", res)
        result["files"][f"ranks {task}"] = csv_path.name
        result["faiss"][task] = {"kind": meta["indexes"][gname]["kind"], f"top{top_k}_agreement_with_exact": res.agreement}
        if res.metrics is not None:
            result["tasks"][task] = m = res.metrics.to_dict()
            # how far each score could move on another draw of queries: small test sets are noisy
            m["ci95"] = {k: [round(100 * x, 2) for x in bootstrap_ci(v)]
                         for k, v in res.scores.items()} if res.positions else {}
            curves[task] = res.metrics.cmc
            first_ranks[task] = [int(p[0]) + 1 for p in res.positions or [] if len(p)]
            log.info("%s: R@1 %.2f [95%% CI %.1f-%.1f] R@5 %.2f R@10 %.2f R@top1%% %.2f AP %.2f (%d queries, gallery %d)",
                     task, m["R@1"], *m["ci95"].get("R@1", (float("nan"),) * 2), m.get("R@5", float("nan")),
                     m.get("R@10", float("nan")), m["R@top1%"], m["AP"], m["n_queries"], m["n_gallery"])
        else:
            result["tasks"][task] = {"note": "no labels (name-masked UAVM2025 set): answer only",
                                     "n_queries": len(res.query.names), "n_gallery": len(res.gallery.names)}
        if task == ANSWER_TASK:
            street = res
    if curves:
        result["files"]["recall_curve"] = plot_recall_curve(curves, out_dir / "recall_curve.png", max_k=curve_max_k).name
        result["files"]["rank_histogram"] = plot_rank_histogram(first_ranks, out_dir / "rank_histogram.png").name
    if write_answer and street is not None:
        try:
            names, rows, order_file, folder = answer_names(meta, street.query, out_dir, workdir)
            ranked = [[street.gallery.names[j] for j in street.top[r] if j >= 0] for r in rows]
            gallery_names = [Path(n).name for n in street.gallery.names]
            zip_path = export_answer(names, [[Path(g).name for g in row] for row in ranked], out_dir / "answer.zip",
                                     query_folder=folder, gallery_names=gallery_names)
            import zipfile

            with zipfile.ZipFile(zip_path) as zf:
                (out_dir / "answer.txt").write_bytes(zf.read("answer.txt"))
            result["answer"] = {"written": True, "queries": len(names), "query_order": record_path(order_file, workdir)}
            result["files"]["answer"] = "answer.zip"
        except SubmissionError as e:
            log.warning("answer.zip not written: %s", e)
            result["answer"] = {"written": False, "reason": str(e)}
    tmp = out_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out_dir / "metrics.json")
    return result
