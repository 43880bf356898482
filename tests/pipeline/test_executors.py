"""The local process pool gives each worker its share of the cores for OpenMP."""
import os
from pathlib import Path

from pipeline.executors import map_items


def _report_threads(item_id, key, fn, out_root, kwargs):
    import torch

    return {"omp": os.environ.get("OMP_NUM_THREADS"), "torch": torch.get_num_threads()}


def test_pool_workers_share_the_cores(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    recs = dict(map_items(_report_threads, [("a", "1"), ("b", "2")], fn=None, out_root=tmp_path, kwargs={},
                          workers=2))
    share = max(1, (os.cpu_count() or 1) // 2)
    assert all(r["omp"] == str(share) and r["torch"] == share for r in recs.values())
    monkeypatch.setenv("OMP_NUM_THREADS", "1")     # the user's choice wins
    recs = dict(map_items(_report_threads, [("a", "1"), ("b", "2")], fn=None, out_root=tmp_path, kwargs={},
                          workers=2))
    assert all(r["omp"] == "1" for r in recs.values())
