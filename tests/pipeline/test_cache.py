"""The stage cache: skip when unchanged, recompute downstream only, per-item resume, lock."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.cache import LockError, workdir_lock
from pipeline.config import Config
from pipeline.stage import Stage, run_stage

CALLS: list[str] = []


def _item(item_id: str, out: Path, factor: int) -> dict:
    CALLS.append(item_id)
    (out / "value.txt").write_text(str(int(item_id) * factor))
    return {"value": int(item_id) * factor}


def _first(ctx):
    ctx.run_items({"0001": "a", "0002": "b", "0003": "c"}, _item, factor=ctx.config.train.epochs)
    return {"n": 3}


def _second(ctx):
    total = sum(int((ctx.input("first") / i / "value.txt").read_text()) for i in ctx.ok_items("first"))
    (ctx.out / "total.txt").write_text(str(total))
    CALLS.append("second")
    return {"total": total}


FIRST = Stage("first", ("train",), (), _first)
SECOND = Stage("second", ("index",), ("first",), _second)


def test_skip_recompute_and_downstream(tmp_path):
    cfg = Config()
    CALLS.clear()
    run_stage(FIRST, cfg, tmp_path)
    run_stage(SECOND, cfg, tmp_path)
    assert sorted(CALLS) == ["0001", "0002", "0003", "second"]
    CALLS.clear()
    t0 = time.perf_counter()
    m = run_stage(FIRST, cfg, tmp_path)
    run_stage(SECOND, cfg, tmp_path)
    assert time.perf_counter() - t0 < 0.5 and CALLS == []
    assert m["items"]["0002"]["status"] == "ok" and m["items"]["0002"]["value"] == 2 * cfg.train.epochs
    # a value of the downstream section recomputes that stage only
    cfg.index.kind = "hnsw"
    run_stage(FIRST, cfg, tmp_path)
    run_stage(SECOND, cfg, tmp_path)
    assert CALLS == ["second"]
    # a value of the upstream section recomputes both
    CALLS.clear()
    cfg.train.epochs += 1
    run_stage(FIRST, cfg, tmp_path)
    run_stage(SECOND, cfg, tmp_path)
    assert sorted(CALLS) == ["0001", "0002", "0003", "second"]
    assert (tmp_path / "second" / "total.txt").read_text() == str(6 * cfg.train.epochs)


def _flaky(item_id, out):
    if item_id == "0002":
        raise ValueError(f"{item_id}/image-03.jpeg: not a decodable image")
    (out / "ok").write_text("1")


def test_failed_item_is_recorded_and_others_go_on(tmp_path):
    stage = Stage("flaky", ("train",), (), lambda ctx: ctx.run_items({"0001": "a", "0002": "b"}, _flaky))
    m = run_stage(stage, Config(), tmp_path)
    assert m["items"]["0001"]["status"] == "ok"
    assert m["items"]["0002"]["status"] == "failed"
    assert "image-03.jpeg: not a decodable image" in m["items"]["0002"]["reason"]
    assert not (tmp_path / "flaky" / "0002").exists()


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from pipeline.config import Config
    from pipeline.stage import Stage, run_stage
    from tests.pipeline.test_cache import _slow_item
    def body(ctx):
        ctx.run_items({f"{i:04d}": str(i) for i in range(1, 7)}, _slow_item, delay=float(sys.argv[2]))
    run_stage(Stage("slow", ("train",), (), body), Config(), Path(sys.argv[1]))
""")


def _slow_item(item_id, out, delay):
    (out / "part1.txt").write_text(item_id)
    time.sleep(delay)
    (out / "part2.txt").write_text(item_id * 2)
    return {"len": len(item_id)}


def test_sigkill_then_resume(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(repo))
    p = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path), "0.4"], cwd=repo, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((tmp_path / "slow").glob("[0-9]*"))) < 2:
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    done_before = sorted(d.name for d in (tmp_path / "slow").glob("[0-9]*"))
    assert 2 <= len(done_before) < 6, done_before
    assert not (tmp_path / "slow" / "manifest.json").exists()
    # every item that looks finished is complete
    for d in done_before:
        assert (tmp_path / "slow" / d / "part2.txt").read_text() == d * 2
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tmp_path), "0"], cwd=repo, env=env, check=True)
    m = json.loads((tmp_path / "slow" / "manifest.json").read_text())
    assert m["counts"]["cached"] == len(done_before) and m["counts"]["ok"] == 6
    assert sorted(p.name for p in (tmp_path / "slow").iterdir()) == [f"{i:04d}" for i in range(1, 7)] + ["manifest.json"]


def test_lock_refuses_second_run_and_takes_over_stale(tmp_path):
    with workdir_lock(tmp_path):
        with pytest.raises(LockError, match=r"in use by another skylink run \(pid"):
            # a second holder is another process; simulate with a foreign live pid
            lock = tmp_path / ".lock"
            lock.write_text(str(os.getppid()))
            with workdir_lock(tmp_path):
                pass
        lock.write_text(str(os.getpid()))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / ".lock").write_text(dead.stdout.strip())
    with workdir_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert not (tmp_path / ".lock").exists()


def _interrupting(item_id, out, factor):
    if item_id == "0002":
        raise KeyboardInterrupt  # as a Ctrl-C or kill would, half-way through the items
    return _item(item_id, out, factor)


def test_an_interrupted_rerun_never_leaves_the_old_manifest_looking_finished(tmp_path):
    cfg = Config()
    run_stage(FIRST, cfg, tmp_path)
    cfg.train.epochs += 1

    def boom(ctx):
        ctx.run_items({"0001": "a", "0002": "b", "0003": "c"}, _interrupting, factor=99)

    with pytest.raises(KeyboardInterrupt):
        run_stage(Stage("first", ("train",), (), boom), cfg, tmp_path)
    m = json.loads((tmp_path / "first" / "manifest.json").read_text())
    assert m["finished"] is False
    cfg.train.epochs -= 1
    CALLS.clear()
    run_stage(FIRST, cfg, tmp_path)  # the original config again: item 0001 must be recomputed
    assert CALLS == ["0001"]
    assert (tmp_path / "first" / "0001" / "value.txt").read_text() == str(cfg.train.epochs)


def test_a_field_added_later_changes_no_cache_key_until_it_is_set():
    """An upgrade that adds an option must keep finished stages valid (a 3D cache costs an hour)."""
    import dataclasses

    from pipeline.stage import stage_key
    from retrieval.config import TrainConfig, added_later, key_dict

    @dataclasses.dataclass
    class Upgraded(TrainConfig):
        new_option: float = added_later(0.0)

    old, new = Config(), Config()
    new.train = Upgraded(**dataclasses.asdict(old.train))
    assert key_dict(new.train) == key_dict(old.train)
    assert "new_option" not in key_dict(new.train)
    assert stage_key(FIRST, new, {}) == stage_key(FIRST, old, {})
    new.train.new_option = 1.0
    assert stage_key(FIRST, new, {}) != stage_key(FIRST, old, {})
    # an ordinary field still counts at its default
    assert "epochs" in key_dict(old.train)
