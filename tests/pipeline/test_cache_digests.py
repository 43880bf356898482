"""Cache keys follow what the inputs produced: a forced upstream re-run that changes one item's output
recomputes exactly the downstream items that read it; one that reproduces the same bytes recomputes
nothing; a cache built by another SkyLink version is kept, with a warning."""
import json
import logging
import time

import pytest

from pipeline.cache import skylink_version
from pipeline.config import Config
from pipeline.log import log
from pipeline.stage import Stage, run_stage

VALUES = {"0001": "a", "0002": "b", "0003": "c"}
CALLS: list[str] = []


def _up_item(item_id, out):
    (out / "value.txt").write_text(VALUES[item_id])
    (out / "note.txt").write_text("unused by downstream")


def _up(ctx):
    ctx.run_items({k: k for k in VALUES}, _up_item)
    # a log that changes on every run: volatile, so not part of the stage's digest
    (ctx.out / "run.log").write_text(str(time.time_ns()))


def _down_item(item_id, out, up):
    CALLS.append(f"down:{item_id}")
    (out / "double.txt").write_text((up / item_id / "value.txt").read_text() * 2)


def _down(ctx):
    up = ctx.input("up")
    # the per-item input is the digest up recorded for the file this stage reads
    items = {b: ctx.item_digest("up", b, ["value.txt"]) for b in ctx.ok_items("up")}
    ctx.run_items(items, _down_item, up=up)


def _last(ctx):
    CALLS.append("last")
    down = ctx.input("down")
    text = "".join((down / b / "double.txt").read_text() for b in ctx.ok_items("down"))
    (ctx.out / "all.txt").write_text(text)


UP = Stage("up", ("train",), (), _up, volatile=("run.log",))
DOWN = Stage("down", ("render",), ("up",), _down)
LAST = Stage("last", ("index",), ("down",), _last)


def _run_all(cfg, workdir, force=()):
    return {s.name: run_stage(s, cfg, workdir, force=s.name in force) for s in (UP, DOWN, LAST)}


@pytest.fixture
def built(tmp_path, monkeypatch):
    monkeypatch.setitem(VALUES, "0002", "b")
    CALLS.clear()
    cfg = Config()
    _run_all(cfg, tmp_path)
    assert sorted(CALLS) == ["down:0001", "down:0002", "down:0003", "last"]
    CALLS.clear()
    return cfg, tmp_path


def test_manifests_record_item_and_stage_digests(built):
    cfg, work = built
    up = json.loads((work / "up" / "manifest.json").read_text())
    rec = json.loads((work / "up" / "0002" / "item.json").read_text())
    assert set(rec["files"]) == {"note.txt", "value.txt"} and rec["digest"] == up["items"]["0002"]["digest"]
    assert "files" not in up["items"]["0002"]  # per-file digests stay in item.json
    assert up["digest"] and up["versions"]["skylink"] == skylink_version()
    down = json.loads((work / "down" / "manifest.json").read_text())
    assert down["inputs"] == {"up": up["digest"]}


def test_upstream_change_of_one_item_recomputes_only_its_downstream_item(built, monkeypatch):
    cfg, work = built
    before = json.loads((work / "down" / "manifest.json").read_text())
    monkeypatch.setitem(VALUES, "0002", "B")  # as a code change would: same config, new output
    m = _run_all(cfg, work, force=("up",))
    assert CALLS == ["down:0002", "last"]
    assert m["down"]["counts"]["cached"] == 2 and m["down"]["counts"]["changed"] == 1
    assert m["down"]["items"]["0001"]["digest"] == before["items"]["0001"]["digest"]
    assert m["down"]["items"]["0002"]["digest"] != before["items"]["0002"]["digest"]
    assert (work / "last" / "all.txt").read_text() == "aaBBcc"


def test_upstream_rerun_with_identical_output_keeps_downstream_cached(built):
    cfg, work = built
    up_before = json.loads((work / "up" / "manifest.json").read_text())
    m = _run_all(cfg, work, force=("up",))
    assert m["up"]["finished_at"] and m["up"]["digest"] == up_before["digest"]
    assert CALLS == []  # neither down nor last ran


def test_a_change_downstream_does_not_read_recomputes_no_downstream_item(built):
    cfg, work = built
    stage = Stage("up", ("train",), (), lambda ctx: ctx.run_items({k: k for k in VALUES}, _up_item_new))
    assert run_stage(stage, cfg, work, force=True)["digest"] != json.loads((work / "down" / "manifest.json").read_text())["inputs"]["up"]
    down = run_stage(DOWN, cfg, work)
    run_stage(LAST, cfg, work)
    # up's digest changed, so down ran, but the one file each of its items reads was the same
    assert down["counts"]["cached"] == 3 and CALLS == []  # down's outputs are identical: last stays cached


def _up_item_new(item_id, out):
    (out / "value.txt").write_text(VALUES[item_id])
    (out / "note.txt").write_text("changed, but nobody reads it")


def test_cache_of_another_version_is_kept_with_a_warning(built):
    cfg, work = built
    path = work / "down" / "manifest.json"
    m = json.loads(path.read_text())
    m["versions"]["skylink"] = "0.0.1"
    path.write_text(json.dumps(m))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    log.addHandler(handler)
    try:
        _run_all(cfg, work)
    finally:
        log.removeHandler(handler)
    assert CALLS == []  # warned, not recomputed
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING]
    assert any("down: cached by SkyLink 0.0.1" in w and skylink_version() in w for w in warnings), warnings


def test_overview_of_the_report_names_the_other_version(built):
    from pipeline.report.sections import ReportContext, overview
    from pipeline.config import ReportConfig

    cfg, work = built
    for stage in ("data", "reconstruct"):
        (work / stage).mkdir()
        (work / stage / "manifest.json").write_text(json.dumps(
            {"stage": stage, "finished": True, "versions": {"skylink": "0.0.1" if stage == "data" else skylink_version()}}))
    html = overview(ReportContext(workdir=work, site=work / "site", cfg=ReportConfig()))
    assert "0.0.1" in html and "another SkyLink version" in html


def test_records_of_an_older_skylink_without_digests_stay_cached(built):
    """Manifests and item records written before digests: the key stands in for the digest, and a
    cached item gets its digests once, so an upgrade alone recomputes nothing."""
    from pipeline.stage import input_keys_of

    cfg, work = built
    up_path = work / "up" / "manifest.json"
    up = json.loads(up_path.read_text())
    del up["digest"]
    up_path.write_text(json.dumps(up))
    assert input_keys_of(DOWN, work) == {"up": up["key"]}
    rec_path = work / "up" / "0001" / "item.json"
    rec = json.loads(rec_path.read_text())
    digest = rec.pop("digest")
    del rec["files"]
    rec_path.write_text(json.dumps(rec))
    m = run_stage(UP, cfg, work, force=False)  # cached as a whole: nothing touched
    assert "digest" not in m
    up["key"] = "stale"  # the stage re-runs, its items stay cached and get their digests back
    up_path.write_text(json.dumps(up))
    m = run_stage(UP, cfg, work)
    assert m["counts"]["cached"] == 3 and m["items"]["0001"]["digest"] == digest
    assert json.loads(rec_path.read_text())["digest"] == digest
