"""The one-screen summary of `skylink run`, from the manifests and metrics a run leaves."""
import json
from pathlib import Path

from pipeline.summary import StageRun, run_summary


def _write(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_summary_names_what_was_built_the_report_and_the_figures_with_baselines(tmp_path):
    w = tmp_path / "w"
    _write(w / "data" / "manifest.json", {"finished": True, "summary": {
        "images": 120, "table": [{"split": "train", "images": 100}, {"split": "test", "images": 20}]}})
    _write(w / "reconstruct" / "manifest.json", {"finished": True, "summary": {
        "buildings": 4, "ok": 4, "registered": 214, "images": 216}})
    _write(w / "render" / "manifest.json", {"finished": True, "summary": {"buildings": 4, "ok": 4, "views": 10, "image_size": 96}})
    _write(w / "evaluate" / "metrics.json", {"tasks": {
        "street->satellite": {"R@1": 40.0, "R@5": 80.0, "R@10": 100.0, "AP": 55.5, "n_queries": 10, "n_gallery": 5,
                              "ci95": {"R@1": [10.0, 70.0], "AP": [30.0, 80.0]}},
        "drone->satellite": {"R@1": 75.0}}})
    _write(w / "ablation" / "results.json", {"baseline": {"R@1": 20.0, "R@5": 60.0, "R@10": 100.0, "AP": 40.0}})
    _write(w / "report" / "index.html", {})
    runs = [StageRun("data", True, 0.01), StageRun("reconstruct", False, 42.0), StageRun("report", False, 2.0)]
    text = run_summary(w, runs, title="SkyLink tiny")
    lines = text.splitlines()
    assert len(lines) <= 16
    assert "data cached" in text and "reconstruct 42.0 s" in text and "(2 computed, 1 cached" in text
    assert "4/4 buildings reconstructed, 214/216 drone images registered" in text
    assert "120 images (test 20, train 100)" in text
    model = next(x for x in lines if x.strip().startswith("model"))
    assert "40.0 [10-70]" in model and "55.5 [30-80]" in model
    colour = next(x for x in lines if "colour histogram" in x)
    assert "20.0" in colour
    chance = next(x for x in lines if x.strip().startswith("chance"))
    assert chance.split()[1:4] == ["20.0", "100.0", "100.0"]   # 1/5, then k >= gallery
    assert f"report:  {(w / 'report' / 'index.html').resolve()}" in lines
    assert "drone->satellite R@1 75.0" in text


def test_summary_without_metrics_says_so(tmp_path):
    text = run_summary(tmp_path, [StageRun("data", False, 1.0)])
    assert "metrics: not available" in text and "report:" not in text
