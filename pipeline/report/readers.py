"""Readers of the upstream artifacts the report shows: PLY clouds, render maps, TensorBoard scalars, ranks CSVs."""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


class Missing(Exception):
    """An artifact a section needs is absent; the message is the one line the page shows instead."""


def read_json_file(path: Path) -> dict:
    """A JSON object from `path`; Missing when absent, ValueError naming the file when it is not valid."""
    path = Path(path)
    if not path.is_file():
        raise Missing(f"{path} not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return data


def read_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """xyz float32 [N,3] and rgb uint8 [N,3] of a PLY point cloud (grey when it has no colours)."""
    from reconstruction.render import load_points

    if not Path(path).is_file():
        raise Missing(f"{path} not found")
    return load_points(Path(path))


def read_map(path: Path) -> np.ndarray | None:
    """An image (RGB uint8) from PNG/JPEG or a float map from NPY; None when the file is absent or unreadable."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix == ".npy":
        try:
            return np.load(path).astype(np.float32)
        except (ValueError, OSError):
            return None
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def find_event_files(root: Path) -> list[Path]:
    return sorted(Path(root).rglob("events.out.tfevents.*"))


def read_tensorboard_scalars(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag under `root` (all event files, e.g. after a resume) -> (steps, values), sorted by step.

    A step logged twice (a resumed run repeats an epoch) keeps the last value written.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    merged: dict[str, dict[int, float]] = {}
    for f in find_event_files(root):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            series = merged.setdefault(tag, {})
            for ev in acc.Scalars(tag):
                series[int(ev.step)] = float(ev.value)
    return {tag: (np.array(sorted(s)), np.array([s[k] for k in sorted(s)])) for tag, s in merged.items() if s}


def read_history(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Scalars from a training history: JSON (list of records, or {"history": [...]}) or CSV with a step/epoch column."""
    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text())
        records = data.get("history", data.get("epochs", [])) if isinstance(data, dict) else data
    else:
        with open(path, newline="") as f:
            records = list(csv.DictReader(f))
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a list of per-step records")
    xkey = next((k for k in ("step", "epoch", "global_step") if records and k in records[0]), None)
    series: dict[str, tuple[list, list]] = {}
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: record {i} is not an object")
        x = _num(r.get(xkey)) if xkey else i
        for k, v in r.items():
            val = _num(v)
            if k == xkey or val is None or x is None:
                continue
            xs, ys = series.setdefault(k, ([], []))
            xs.append(x)
            ys.append(val)
    return {k: (np.asarray(xs), np.asarray(ys)) for k, (xs, ys) in series.items()}


def _num(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


# --- per-query ranks -------------------------------------------------------------------------------

_QUERY_KEYS = ("query", "query_path", "query_name", "path", "name")
_LABEL_KEYS = ("label", "query_label", "building", "query_id", "id", "true", "truth")
_RANK_KEYS = ("rank", "first_rank", "first_match_rank", "rank_first_match", "first_match", "match_rank", "true_rank")
_TASK_KEYS = ("task",)
_TOP_COL = re.compile(r"^(?:top|rank|gallery|g)_?(\d+)$", re.IGNORECASE)
_TOP_LIST_KEYS = ("top", "topk", "top_k", "top10", "gallery", "retrieved", "ranking", "top_names")


@dataclass
class QueryRanks:
    query: str                     # path of the query image (relative to the dataset root, or a name)
    label: str | None              # the building it shows
    first_rank: int | None         # 1-based rank of its first true match in the full gallery
    top: list[str] = field(default_factory=list)   # gallery names or paths of the head of the ranking
    task: str = ""


def _pick(cols: list[str], keys: tuple[str, ...]) -> str | None:
    low = {c.lower().strip(): c for c in cols}
    return next((low[k] for k in keys if k in low), None)


def read_ranks_csv(path: Path, task: str = "") -> list[QueryRanks]:
    """Per-query ranks from an evaluate CSV, tolerant of the column naming (see the _*_KEYS above).

    The head of the ranking is read from numbered columns (top1, top2 ... or rank_1 ...) or from one
    column (top10, top, ...) holding a list separated by ';', '|' or tabs.
    """
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        cols = list(reader.fieldnames or [])
        rows = list(reader)
    qcol, lcol, rcol, tcol = (_pick(cols, k) for k in (_QUERY_KEYS, _LABEL_KEYS, _RANK_KEYS, _TASK_KEYS))
    if qcol is None:
        raise ValueError(f"{path}: no query column (one of {', '.join(_QUERY_KEYS)}) in {cols}")
    numbered = sorted(((int(m.group(1)), c) for c in cols if (m := _TOP_COL.match(c.strip())) and c != rcol))
    if len(numbered) == 1:  # one "top10" column holds the whole list
        numbered = []
    top_cols = [c for _, c in numbered] or [c for c in [_pick(cols, _TOP_LIST_KEYS) or _single_top(cols)] if c]
    out = []
    for r in rows:
        top = [t.strip() for c in top_cols for t in re.split(r"[;|\t]", r.get(c) or "") if t.strip()]
        rank = _num(r.get(rcol)) if rcol else None
        out.append(QueryRanks(
            query=r[qcol].strip(),
            label=((r.get(lcol) or "").strip() or None) if lcol else None,
            first_rank=int(rank) if rank is not None else None,
            top=top,
            task=(r.get(tcol) or "").strip() if tcol else task,
        ))
    return out


def _single_top(cols: list[str]) -> str | None:
    return next((c for c in cols if _TOP_COL.match(c.strip())), None)


def cmc_from_ranks(first_ranks: list[int | None], n_gallery: int | None = None) -> np.ndarray:
    """CMC curve (Recall@K for K = 1..N) from each query's 1-based first-match rank (None: no match)."""
    ranks = np.array([r if r is not None and r > 0 else np.inf for r in first_ranks], dtype=np.float64)
    finite = ranks[np.isfinite(ranks)]
    n = int(n_gallery or (finite.max() if len(finite) else 1))
    k = np.arange(1, max(n, 1) + 1)
    return (ranks[None, :] <= k[:, None]).mean(axis=1) if len(ranks) else np.zeros(len(k))
