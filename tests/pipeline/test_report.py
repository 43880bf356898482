"""The report page: built from a small fake work dir with the stages' documented files, rendered in
headless Chromium with all its images, and each section degrading to one line when its input is absent."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.cache import atomic_write_json
from pipeline.config import Config, ReportConfig
from pipeline.report import PAGE, build_report
from pipeline.report.readers import cmc_from_ranks, read_ranks_csv

TRAIN_IDS = ("0001", "0002", "0003")
TEST_IDS = ("0101", "0102", "0103", "0104")
DISTRACTORS = ("0201", "0202")
PALETTE = [(200, 80, 60), (60, 140, 200), (90, 170, 90), (200, 170, 60), (150, 90, 180), (90, 90, 90)]


def _manifest(workdir: Path, stage: str, items: dict | None = None, summary: dict | None = None) -> None:
    atomic_write_json(workdir / stage / "manifest.json", {
        "stage": stage, "key": f"key-{stage}", "finished": True, "finished_at": "2025-01-01T00:00:00",
        "items": items or {}, "counts": {"ok": sum(1 for v in (items or {}).values() if v["status"] == "ok"),
                                         "failed": sum(1 for v in (items or {}).values() if v["status"] != "ok")},
        "timings": {"seconds": 1.5}, "summary": summary or {},
    })


def _image(path: Path, colour: tuple[int, int, int], text: str, size: int = 64) -> None:
    img = np.full((size, size, 3), colour[::-1], np.uint8)
    cv2.rectangle(img, (size // 4, size // 4), (3 * size // 4, 3 * size // 4), (255, 255, 255), 2)
    cv2.putText(img, text, (4, size - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)


def _ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    head = ("ply\nformat ascii 1.0\n"
            f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
            "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    body = "".join(f"{x:.4f} {y:.4f} {z:.4f} {r} {g} {b}\n" for (x, y, z), (r, g, b) in zip(xyz, rgb))
    path.write_text(head + body)


def _box_cloud(n: int, rng: np.random.Generator, height: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on a box-shaped building on a ground plane: roof red, walls grey, ground green."""
    g = rng.uniform(-10, 10, (n, 3)) * [1, 1, 0]
    roof = np.c_[rng.uniform(-4, 4, (n // 2, 2)), np.full(n // 2, height)]
    wall = np.c_[rng.uniform(-4, 4, n // 2), np.full(n // 2, -4.0), rng.uniform(0, height, n // 2)]
    xyz = np.concatenate([g, roof, wall]).astype(np.float32)
    rgb = np.concatenate([np.tile([80, 160, 80], (n, 1)), np.tile([200, 60, 50], (n // 2, 1)),
                          np.tile([150, 150, 150], (n // 2, 1))]).astype(np.uint8)
    return xyz, rgb


def make_workdir(root: Path, stages: tuple[str, ...] = ("data", "reconstruct", "render", "enhance", "train",
                                                          "index", "evaluate", "ablation")) -> Path:
    """A small work dir with every stage's documented artifacts (as far as `stages` says)."""
    rng = np.random.default_rng(0)
    wd = root / "work"
    tree = wd / "data" / "tree"
    if "data" in stages:
        for i, b in enumerate(TEST_IDS):
            _image(tree / "test" / "query_street" / b / "street-01.jpg", PALETTE[i], f"street {b}")
        for i, b in enumerate(TEST_IDS + DISTRACTORS):
            _image(tree / "test" / "gallery_satellite" / b / f"{b}.jpg", PALETTE[i], f"sat {b}")
        (tree / "meta").mkdir(parents=True, exist_ok=True)
        _image(tree / "meta" / "preview" / "overview.png", (120, 120, 160), "preview", 200)
        table = [{"split": "test", "folder": "gallery_satellite", "buildings": 6, "images": 6},
                 {"split": "test", "folder": "query_street", "buildings": 4, "images": 4},
                 {"split": "train", "folder": "drone", "buildings": 3, "images": 162}]
        _manifest(wd, "data", summary={"images": 172, "table": table, "root": str(tree)})
    if "reconstruct" in stages:
        items = {}
        for b in TRAIN_IDS[:2]:
            d = wd / "reconstruct" / b
            d.mkdir(parents=True)
            for k in (1, 2, 3):
                xyz, rgb = _box_cloud(300 // k, rng, 6.0)
                _ply(d / f"scale{k}.ply", xyz, rgb)
            atomic_write_json(d / "quality.json", {
                "total": 54, "registered": 53, "registered_ratio": 53 / 54, "mean_reprojection_error": 0.61,
                "mean_track_length": 4.2, "points_per_scale": {"1": 300, "2": 150, "3": 100},
                "alignment": {"method": "priors"}, "seconds": {"total": 21.4},
                "ground_truth": {"camera_error_rel_median": 0.0042, "mesh_distance_rel_median": 0.008,
                                 "mesh_distance_rel_p90": 0.02, "relative_rotation_error_deg_median": 0.12},
            })
            items[b] = {"status": "ok", "seconds": 21.4}
        items[TRAIN_IDS[2]] = {"status": "failed", "reason": "ReconstructionError: only 9 of 54 images registered"}
        _manifest(wd, "reconstruct", items)
    if "render" in stages:
        items = {}
        for b in TRAIN_IDS[:2]:
            for k in (1, 2, 3):
                d = wd / "render" / b / f"scale{k}"
                for v in ("view00", "view01"):
                    _image(d / f"{v}_color.png", PALETTE[k], f"{v} s{k}", 48)
                    _image(d / f"{v}_normals.png", (128, 128, 255), "n", 48)
                    depth = np.fromfunction(lambda y, x: 10 + x / 8.0, (48, 48)).astype(np.float16)
                    depth[:8] = 0
                    np.save(d / f"{v}_depth.npy", depth)
                    np.save(d / f"{v}_height.npy", (depth > 0) * np.fromfunction(lambda y, x: y / 8.0, (48, 48)).astype(np.float16))
                np.save(d / "dsm.npy", np.fromfunction(lambda y, x: (abs(x - 24) < 10) * (abs(y - 24) < 10) * 6.0, (48, 48)).astype(np.float16))
            if b == TRAIN_IDS[0]:   # reconstructed without GPS; the other has no unit (an older render: metres)
                atomic_write_json(wd / "render" / b / "scale1" / "cameras.json", {"unit": "orbit radius"})
            items[b] = {"status": "ok", "views": 2}
        _manifest(wd, "render", items)
    if "enhance" in stages:
        for b in TRAIN_IDS:
            atomic_write_json(wd / "enhance" / b / "grem.json", {"kept": [f"train/google/{b}/g1.jpg"], "dropped": [f"train/google/{b}/g2.jpg"]})
        _manifest(wd, "enhance", {b: {"status": "ok"} for b in TRAIN_IDS},
                  summary={"grem": {"precision": 0.8, "recall": 0.67, "precision_keep_all": 0.5, "n_kept": 3, "n_right": 4}})
    if "train" in stages:
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(wd / "train" / "tb"))
        for step in range(1, 21):
            w.add_scalar("loss/total", 3.0 / step, step)
            w.add_scalar("loss/street_satellite", 2.0 / step, step)
            w.add_scalar("temperature", 0.07 - step * 1e-3, step)
        w.add_scalar("val/R@1", 0.4, 10)
        w.add_scalar("val/R@1", 0.6, 20)
        w.close()
        atomic_write_json(wd / "train" / "history.json", [
            {"epoch": 1, "loss_total": 0.3, "temperature": 0.06, "images_per_s": 12.0, "seconds": 5.0, "val_r1": 0.4},
            {"epoch": 2, "loss_total": 0.15, "temperature": 0.05, "images_per_s": 12.5, "seconds": 5.1, "val_r1": 0.6}])
        _manifest(wd, "train")
    if "index" in stages:
        _manifest(wd, "index")
    if "evaluate" in stages:
        _write_evaluate(wd / "evaluate")
        _manifest(wd, "evaluate")
    if "ablation" in stages:
        atomic_write_json(wd / "ablation" / "results.json", {
            "seeds": 3, "train": {"epochs": 8},
            "variants": {"full": {"label": "full model", "R@1": {"mean": 40.0, "std": 2.0}, "AP": {"mean": 45.0, "std": 1.5}},
                         "no3d": {"label": "without the 3D bridge", "R@1": {"mean": 31.0, "std": 3.0}}},
            "baseline": {"R@1": 12.5}, "pretrained": {"R@1": 7.75}})
    return wd


def _write_evaluate(out: Path) -> None:
    """metrics.json and the ranks CSV through the evaluate module's own writer."""
    from retrieval.evaluate import TaskResult, write_ranks_csv
    from retrieval.metrics import summarize
    from retrieval.search import EmbeddingSet

    gallery = [f"test/gallery_satellite/{b}/{b}.jpg" for b in TEST_IDS + DISTRACTORS]
    glabels = list(TEST_IDS + DISTRACTORS)
    queries = [f"test/query_street/{b}/street-01.jpg" for b in TEST_IDS]
    # query i's ranking: 0101 and 0103 right at rank 1, 0102 at rank 3, 0104 at rank 6 (outside the top-5)
    tops = np.array([[0, 1, 2, 3, 4, 5], [2, 0, 1, 3, 4, 5], [2, 1, 0, 3, 4, 5], [0, 1, 2, 4, 5, 3]])
    positions = [np.array([list(t).index(i)]) for i, t in enumerate(tops)]
    res = TaskResult("street->satellite", summarize(positions, len(gallery)),
                     EmbeddingSet("query_street", np.zeros((4, 2), np.float32), queries, list(TEST_IDS)),
                     EmbeddingSet("gallery_satellite", np.zeros((6, 2), np.float32), gallery, glabels),
                     tops, 1.0, positions, [1.0, 1 / 3, 1.0, 1 / 6])
    out.mkdir(parents=True, exist_ok=True)
    csv_path = write_ranks_csv(out / "ranks_street-satellite.csv", res)
    atomic_write_json(out / "metrics.json", {"tasks": {"street->satellite": res.metrics.to_dict()},
                                             "files": {"ranks street->satellite": csv_path.name}})


def _sections(html: str) -> dict[str, tuple[bool, str]]:
    """Section id -> (missing, body html)."""
    return {m.group(1): (m.group(2) == "true", m.group(3))
            for m in re.finditer(r'<section id="([^"]+)" data-missing="(true|false)">(.*?)</section>', html, re.S)}


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    wd = make_workdir(root)
    report = build_report(wd, wd / "report", ReportConfig(n_examples=4))
    return wd, report


def test_full_report_has_every_section_and_figure(full_report):
    wd, report = full_report
    html = report.page.read_text()
    sections = _sections(html)
    assert list(sections) == ["pipeline", "dataset", "reconstruction", "renders", "grem", "training", "evaluation",
                              "ablation", "examples"]
    assert report.missing == [], {k: v[1][:200] for k, v in sections.items() if v[0]}
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all(not s.startswith(("/", "file:")) for s in srcs)  # relative links beside the page
    for s in srcs:
        assert (report.page.parent / s).is_file(), s
    for name in ("cloud_0001.png", "render_0001.png", "training_curves.png", "recall_at_k.png"):
        assert f"img/{name}" in srcs
    # the failed building is listed with its reason; the quality numbers are shown
    recon = sections["reconstruction"][1]
    assert "only 9 of 54 images registered" in recon and "53/54" in recon and "0.42%" in recon
    assert "80.0%" in sections["grem"][1] and "67.0%" in sections["grem"][1]
    assert "40.00 ± 2.00" in sections["ablation"][1] and "colour-histogram" in sections["ablation"][1]
    assert "pretrained encoder" in sections["ablation"][1] and "7.75" in sections["ablation"][1]
    # retrieval examples: 2 hits + 2 misses; the rank-6 query shows its true tile after the top 5
    ex = sections["examples"][1]
    assert ex.count('class="example"') == 4
    assert "true tile · rank 6" in ex
    assert ex.count('class="tile hit"') == 4  # 0101, 0103 at 1; 0102 at 3; 0104's true tile appended
    assert ex.count('class="tile miss"') == 4 * 5 - 3


def test_render_caption_names_each_scene_unit(full_report):
    html = full_report[1].page.read_text()
    assert "Depth in metres / orbit radii from the camera" in _sections(html)["renders"][1]


def test_recall_curve_from_ranks_csv(full_report):
    wd, _ = full_report
    ranks = read_ranks_csv(wd / "evaluate" / "ranks_street-satellite.csv")
    assert [r.first_rank for r in ranks] == [1, 3, 1, 6]
    assert ranks[1].top[0] == "test/gallery_satellite/0103/0103.jpg" and ranks[1].label == "0102"
    cmc = cmc_from_ranks([r.first_rank for r in ranks], 6)
    np.testing.assert_allclose(cmc, [0.5, 0.5, 0.75, 0.75, 0.75, 1.0])
    # numbered top-k columns and a query without a true match (counted as a miss at every K)
    other = wd / "other.csv"
    other.write_text("query,label,rank,top1,top2\nq/0001/a.jpg,0001,2,g/0002.jpg,g/0001.jpg\nq/0009/b.jpg,0009,,g/0001.jpg,g/0002.jpg\n")
    ranks = read_ranks_csv(other)
    assert [r.top for r in ranks] == [["g/0002.jpg", "g/0001.jpg"], ["g/0001.jpg", "g/0002.jpg"]]
    assert [r.first_rank for r in ranks] == [2, None]
    np.testing.assert_allclose(cmc_from_ranks([r.first_rank for r in ranks], 2), [0.0, 0.5])


def test_missing_sections_degrade_to_one_line(tmp_path):
    wd = make_workdir(tmp_path, stages=("data", "reconstruct"))
    (wd / "evaluate").mkdir()
    (wd / "evaluate" / "metrics.json").write_text("{ not json")  # a broken artifact, not just a missing one
    (wd / "reconstruct" / "0002" / "scale2.ply").write_text("garbage")  # costs that building's snapshot only
    report = build_report(wd, wd / "report")
    sections = _sections(report.page.read_text())
    assert set(report.missing) == {"renders", "grem", "training", "evaluation", "ablation", "examples"}
    for sid in report.missing:
        body = sections[sid][1]
        assert body.count("<p") == 1 and body.startswith('<h2>') and '<p class="note">' in body, body
    assert "stage &#x27;render&#x27; has not run" in sections["renders"][1]
    assert "metrics.json: not valid JSON" in sections["evaluation"][1]
    assert "no ablation run" in sections["ablation"][1]
    recon = sections["reconstruction"][1]
    assert not sections["reconstruction"][0] and "cloud_0001.png" in recon and "cloud_0002.png" not in recon
    assert "building 0002: no snapshot" in recon and "scale2.ply: not a PLY file" in recon
    # an empty work dir still gives a page
    empty = build_report(tmp_path / "empty", tmp_path / "empty" / "report")
    assert set(empty.missing) == {"dataset", "reconstruction", "renders", "grem", "training", "evaluation",
                                  "ablation", "examples"}


def test_report_stage_runs_on_finished_manifests(tmp_path):
    from pipeline.stage import run_stage
    from pipeline.stages import get_stage

    wd = make_workdir(tmp_path, stages=("data", "reconstruct", "render", "enhance", "train", "index", "evaluate"))
    cfg = Config()
    cfg.report.snapshots = False
    m = run_stage(get_stage("report"), cfg, wd)
    assert m["finished"] and (wd / "report" / PAGE).is_file()
    assert m["summary"]["missing"] == ["ablation"]
    assert "report.snapshots: false" in (wd / "report" / PAGE).read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

PROBE = """<script>
window.addEventListener('load', () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({n: imgs.length, bad: bad, width: document.body.scrollWidth});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package `chromium`; make system-deps)")
def test_page_renders_with_its_images_in_chromium(full_report, tmp_path):
    _, report = full_report
    # A copy of the page beside the original (same relative links) with a probe that records the images' state.
    probe_page = report.page.with_name("probe.html")
    probe_page.write_text(report.page.read_text().replace("</body>", PROBE + "</body>"))
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
           "--window-size=1200,2000", "--dump-dom", probe_page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    probe_page.unlink()
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"no probe output from chromium (rc {proc.returncode}): {proc.stderr[-1500:]}"
    result = json.loads(m.group(1).replace("&quot;", '"'))
    n_expected = len(re.findall(r"<img ", report.page.read_text()))
    assert result["n"] == n_expected > 10
    assert result["bad"] == []
    assert result["width"] <= 1200  # no horizontal overflow at a laptop width


def test_geometry_and_silhouette_tables_and_their_absence(tmp_path):
    from pipeline.report.sections import ReportContext, geometry_quality, silhouette_table

    ctx = ReportContext(tmp_path, tmp_path / "site", ReportConfig())
    assert geometry_quality(ctx, ["0001"]) == "" and silhouette_table(ctx, ["0001"]) == ""
    part = {"points": 900, "accuracy": {"0.01": 0.95, "0.005": 0.8}, "completeness": {"0.01": 0.97},
            "completeness_facades": {"0.01": 0.96}}
    atomic_write_json(tmp_path / "reconstruct" / "0001" / "quality.json",
                      {"ground_truth": {"geometry": {"dense": part, "sparse": part | {"points": 90}}}})
    atomic_write_json(tmp_path / "render" / "0001" / "quality.json", {"silhouette_coverage": {
        "fill_median": 0.41, "in_frame_min": 1.0, "scales": {"1": {"median": 0.97, "min": 0.951}}}})
    geo = geometry_quality(ctx, ["0001", "0002"])
    assert "accuracy @0.5%" in geo and "facades @1%" in geo and geo.count("<tr") == 3  # header + dense + sparse
    sil = silhouette_table(ctx, ["0001"])
    assert "scale 1 median" in sil and "97%" in sil and "95%" in sil


def test_reconstruction_table_names_the_mapper_decision():
    from pipeline.report.sections import _mapper_cell

    assert _mapper_cell({"mapper": "incremental"}) == "incremental"
    check = {"kept": "global", "common": 27, "agreeing": 25, "agreement": 25 / 27, "dropped": ["a", "b"]}
    assert _mapper_cell({"mapper": "global", "mapper_check": check}) == "global (2 disputed dropped)"
    again = check | {"reregistered": ["a", "b"]}
    assert _mapper_cell({"mapper": "global", "mapper_check": again}) == "global (2 disputed dropped, 2 registered again)"
    broken = check | {"kept": "incremental", "agreeing": 13, "common": 23, "dropped": []}
    assert _mapper_cell({"mapper": "incremental", "mapper_check": broken}) == "incremental (global broken: 13/23 agree)"
