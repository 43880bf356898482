"""The enhance stage on the tiny synthetic world: per-building grem.json and the truth check in the summary."""
from __future__ import annotations

import dataclasses
import json
import math

from retrieval.grem import read_kept


def test_enhance_stage_scores_kept_sets_against_truth(tiny_world, tiny_config, tmp_path):
    from pipeline.stage import run_stage
    from pipeline.stages import get_stage

    cfg = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, source="path", root=str(tiny_world)))
    run_stage(get_stage("data"), cfg, tmp_path)
    manifest = run_stage(get_stage("enhance"), cfg, tmp_path)
    summary = manifest["summary"]
    truth = json.loads((tiny_world / "meta" / "google_truth.json").read_text())
    ids = sorted(p.name for p in (tiny_world / "train" / "street").iterdir())
    assert sorted(manifest["items"]) == ids and all(v["status"] == "ok" for v in manifest["items"].values())
    kept = read_kept(tmp_path / "enhance", tiny_world)
    n_google = {b: len(list((tiny_world / "train" / "google" / b).glob("*"))) for b in ids}
    for b in ids:
        assert len(kept[b]) == math.ceil(cfg.enhance.keep_share * n_google[b])
        assert all(p.is_file() for p in kept[b])
    q = summary["truth"]
    assert q["n_google"] == len(truth) == sum(n_google.values())
    # the numbers are recomputed here from the lists and the truth
    right_kept = sum(truth[p.relative_to(tiny_world).as_posix()] == b for b in ids for p in kept[b])
    assert q["n_kept_right"] == right_kept
    assert q["precision"] == round(right_kept / sum(len(v) for v in kept.values()), 4)
    assert set(q["per_building"]) == set(ids)
    assert (tmp_path / "enhance" / "quality.json").is_file() and (tmp_path / "enhance" / "grem_scores.png").is_file()
    # a second run with the same inputs and config is cached
    again = run_stage(get_stage("enhance"), cfg, tmp_path)
    assert again["finished_at"] == manifest["finished_at"]
