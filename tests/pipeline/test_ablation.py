"""Ablation helpers: variant configs, the shared render-feature cache, the table (percent throughout)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.ablation import aggregate_runs, format_ablation, link_features, variant_config
from pipeline.config import load_config

REPO = Path(__file__).resolve().parents[2]


def test_variant_config_changes_only_its_part_and_the_seed():
    cfg = load_config(REPO / "assets" / "configs" / "tiny.yaml", [])
    v = variant_config(cfg, "no3d", 2)
    assert v.train.use_3d is False and v.train.seed == 2
    assert cfg.train.use_3d is True  # the base config is untouched
    assert variant_config(cfg, "gem", 0).train.head == "gem"
    nohard = variant_config(cfg, "nohard", 0).train
    assert not nohard.neighbour_sampling and not nohard.similarity_sampling and nohard.flown_per_batch == 8
    with pytest.raises(ValueError, match="unknown ablation variant"):
        variant_config(cfg, "nope", 0)


def test_a_variant_equal_to_the_full_model_is_skipped(tmp_path: Path, monkeypatch):
    """With no self-supervised term in the config, "nossl" would train the full model again."""
    import pipeline.ablation as ab

    cfg = load_config(REPO / "assets" / "configs" / "tiny.yaml", ["train.ssl_weight=0"])
    ran: list[str] = []
    monkeypatch.setattr(ab, "run_stage", lambda stage, c, wd, **kw: ran.append(Path(wd).name))
    monkeypatch.setattr(ab, "_paired_differences", lambda *a: None)
    monkeypatch.setattr(ab, "_colour_baseline", lambda *a: None)
    monkeypatch.setattr(ab, "_pretrained_baseline", lambda *a: None)
    payload = ab.run_ablation(cfg, tmp_path, seeds=1, variants=["full", "nossl", "ssl"], report=False)
    assert list(payload["variants"]) == ["full", "ssl"]
    assert variant_config(cfg, "ssl", 0).train.ssl_weight == 3.0


def test_runs_share_one_render_feature_cache(tmp_path: Path):
    shared = tmp_path / "ablation" / "render_features"
    old = tmp_path / "ablation" / "full-s0" / "train" / "render_features"
    old.mkdir(parents=True)
    (old / "0001.npy").write_bytes(b"x")
    link_features(shared, old.parents[1])
    assert old.is_symlink() and (shared / "0001.npy").read_bytes() == b"x"   # a private cache is moved in
    run = tmp_path / "ablation" / "gem-s1"
    link_features(shared, run)
    link_features(shared, run)   # idempotent
    link = run / "train" / "render_features"
    assert link.is_symlink() and Path(os.path.realpath(link)) == shared.resolve()
    assert (link / "0001.npy").is_file()


def test_table_is_in_percent_with_baselines_and_chance():
    runs = [{"R@1": 10.0, "R@5": 40.0, "R@10": 60.0, "AP": 20.0}, {"R@1": 20.0, "R@5": 50.0, "R@10": 70.0, "AP": 30.0}]
    payload = {"seeds": 2, "variants": {"full": {"label": "full model", "runs": runs, **aggregate_runs(runs)}},
               "baseline": {"R@1": 3.33, "R@5": 30.0, "R@10": 70.0, "AP": 12.2, "chance_R@1": 6.25, "gallery": 16},
               "pretrained": {"R@1": 0.0, "R@5": 15.56, "R@10": 32.22, "AP": 4.94, "gallery": 16}}
    table = format_ablation(payload)
    assert "| full model | 15.00 ± 7.07 | 45.00 ± 7.07 |" in table
    assert "| colour-histogram matcher (no learning) | 3.33 |" in table
    assert "| chance (1 / gallery of 16) | 6.25 |" in table
    assert "| pretrained encoder, no cross-view training (GeM) | 0.00 | 15.56 | 32.22 | 4.94 |" in table


def _ranks(run: Path, first: list[int]) -> None:
    (run / "evaluate").mkdir(parents=True)
    lines = ["query,building,first_match_rank,n_matches,ap,top10"]
    lines += [f"q{i:02d}.jpg,{i:04d},{r},1,{1.0 if r == 1 else 0.5 / r},x" for i, r in enumerate(first)]
    (run / "evaluate" / "ranks_street-satellite.csv").write_text("\n".join(lines) + "\n")


def test_paired_difference_is_per_query_and_seed_averaged(tmp_path: Path):
    from pipeline.ablation import _paired_differences

    n = 40
    _ranks(tmp_path / "ablation" / "full-s0", [1] * 10 + [7] * (n - 10))
    _ranks(tmp_path / "ablation" / "full-s1", [1] * 20 + [7] * (n - 20))   # full: R@1 37.5% over the seeds
    _ranks(tmp_path / "ablation" / "gem-s0", [2] * n)
    _ranks(tmp_path / "ablation" / "gem-s1", [1] * 2 + [2] * (n - 2))      # gem: R@1 2.5%, R@5 100%
    results = {"full": {"label": "full"}, "gem": {"label": "GeM"}}
    _paired_differences(results, tmp_path, seeds=2)
    d = results["gem"]["delta_vs_full"]
    assert d["R@1"]["mean"] == pytest.approx(2.5 - 37.5)
    assert d["R@5"]["mean"] == pytest.approx(100.0 - 37.5)
    lo, hi = d["R@1"]["ci95"]
    assert lo < -35.0 < hi < 0.0                                          # a clear loss: 0 is outside
    assert "delta_vs_full" not in results["full"]
    table = format_ablation({"seeds": 2, "variants": results})
    assert "| GeM | -35.00 [" in table


def test_a_missing_ranks_file_drops_only_that_row(tmp_path: Path):
    from pipeline.ablation import _paired_differences

    for run, ranks in (("full-s0", [1, 2, 3]), ("gem-s0", [2, 2, 2])):
        _ranks(tmp_path / "ablation" / run, ranks)
    results = {"full": {"label": "full"}, "gem": {"label": "GeM"}, "nossl": {"label": "no SSL"}}
    _paired_differences(results, tmp_path, seeds=1)   # nossl-s0 has no ranks CSV
    assert "delta_vs_full" in results["gem"] and "delta_vs_full" not in results["nossl"]
