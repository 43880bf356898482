"""rebuild-3d on a small region: SIGKILL half-way resumes; only new or changed buildings recompute;
the per-building executors (local pool, Ray) give the same artifacts as in-process runs."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.config import Config
from pipeline.stage import Stage, run_stage

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "assets" / "configs" / "tiny.yaml"


def _region(world: Path, out: Path, n_train: int = 2) -> list[str]:
    """A copy of the tiny world holding only its first `n_train` training buildings."""
    ids = sorted(p.name for p in (world / "train" / "drone").iterdir())[:n_train]
    for view in ("satellite", "drone", "street", "google"):
        for b in ids:
            src = world / "train" / view / b
            if src.is_dir():
                shutil.copytree(src, out / "train" / view / b)
    shutil.copytree(world / "test", out / "test")
    shutil.copytree(world / "meta", out / "meta", ignore=shutil.ignore_patterns("preview"))
    return ids


def _counts(stdout: str) -> dict[str, int]:
    m = re.search(r"(\d+) new, (\d+) changed, (\d+) cached, (\d+) failed", stdout)
    assert m, stdout
    return dict(zip(("new", "changed", "cached", "failed"), map(int, m.groups())))


@pytest.mark.slow
def test_rebuild_3d_resumes_after_sigkill_and_recomputes_only_changes(tiny_world, tmp_path):
    region, work = tmp_path / "region", tmp_path / "work"
    ids = _region(tiny_world, region)
    cmd = [sys.executable, "-m", "pipeline.cli", "rebuild-3d", "--region", str(region), "--workdir", str(work),
           "--config", str(TINY),
           # what is tested is resume and per-building invalidation; the dense step and the checked
           # global mapper have tests of their own and run in the end-to-end test, and would triple
           # this test's time
           "--set", "reconstruct.dense=sparse", "--set", "reconstruct.mapper=incremental"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (work / "reconstruct" / ids[0] / "item.json").exists():
        assert p.poll() is None, "rebuild-3d ended before it could be killed"
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (work / "reconstruct" / ids[1]).exists()

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _counts(resumed.stdout) == {"new": 1, "changed": 0, "cached": 1, "failed": 0}
    for b in ids:
        q = json.loads((work / "reconstruct" / b / "quality.json").read_text())
        assert q["registered"] == q["total"] == 54
        assert (work / "render" / b / "scale3" / "dsm.npy").exists()

    (region / "train" / "drone" / ids[1] / "image-54.jpeg").unlink()  # the region changed
    changed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert changed.returncode == 0, changed.stderr[-2000:]
    assert _counts(changed.stdout) == {"new": 0, "changed": 1, "cached": 1, "failed": 0}
    q = json.loads((work / "reconstruct" / ids[1] / "quality.json").read_text())
    assert q["total"] == 53


def _square(item_id: str, out: Path, offset: int) -> dict:
    (out / "value.txt").write_text(str(int(item_id) ** 2 + offset))
    return {"pid": os.getpid()}


def _stage(ctx):
    ctx.run_items({f"{i:04d}": str(i) for i in range(1, 5)}, _square, offset=7)


@pytest.mark.parametrize("kind, workers", [("local", 2), ("ray", 2)])
def test_executors_give_the_same_artifacts(tmp_path, kind, workers):
    if kind == "ray":
        pytest.importorskip("ray")
    cfg = Config()
    cfg.executor.kind, cfg.executor.workers = kind, workers
    m = run_stage(Stage("sq", ("train",), (), _stage), cfg, tmp_path)
    assert m["counts"]["ok"] == 4
    for i in range(1, 5):
        assert (tmp_path / "sq" / f"{i:04d}" / "value.txt").read_text() == str(i * i + 7)
    assert all(r["pid"] != os.getpid() for r in m["items"].values())  # really ran elsewhere
