"""The generated tree follows the University-1652 layout and docs/CONTRACTS.md, byte-reproducibly."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from synthetic import generate as gen
from synthetic.generate import generate_world
from synthetic.layout import make_layout

from .conftest import small_config


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_tree_layout(small_world: Path):
    cfg = small_config()
    meta = json.loads((small_world / "meta" / "buildings.json").read_text())
    train = {i for i, b in meta.items() if b["split"] == "train"}
    test = {i for i, b in meta.items() if b["split"] == "test" and b["role"] == "query"}
    distr = {i for i, b in meta.items() if b["role"] == "distractor"}
    assert (len(train), len(test), len(distr)) == (cfg.n_train, cfg.n_test, cfg.n_distractors)
    assert all(len(i) == 4 and i.isdigit() for i in meta)

    def ids(sub: str) -> set[str]:
        return {p.name for p in (small_world / sub).iterdir() if p.is_dir()}

    for view in ("satellite", "drone", "street", "google"):
        assert ids(f"train/{view}") == train
    for view in ("drone", "street", "satellite"):
        assert ids(f"test/query_{view}") == test
    assert ids("test/gallery_satellite") == test | distr
    assert ids("test/gallery_drone") == ids("test/gallery_street") == test
    assert not (train & (test | distr))
    for i in train:
        names = sorted(p.name for p in (small_world / "train/drone" / i).iterdir())
        assert names == [f"image-{k:02d}.jpeg" for k in range(1, cfg.drone_images + 1)]
        assert (small_world / "train/satellite" / i / f"{i}.jpg").is_file()
        assert len(list((small_world / "train/street" / i).glob("*.jpg"))) == cfg.street_per_building
        assert len(list((small_world / "train/google" / i).glob("*.jpg"))) == cfg.google_per_building
    # every image has exactly one ground-truth camera, with the right size, and nothing else does
    cams = {}
    for f in (small_world / "meta" / "cameras").glob("*.json"):
        for rel, cam in json.loads(f.read_text()).items():
            assert rel.split("/")[2] == f.stem
            cams[rel] = cam
    images = {str(p.relative_to(small_world)) for p in small_world.rglob("*.jp*g")}
    assert images == set(cams)
    for rel in sorted(images)[::7]:
        img = cv2.imread(str(small_world / rel))
        assert img.shape[:2] == (cams[rel]["height"], cams[rel]["width"])
        assert np.asarray(cams[rel]["cam_from_world"]).shape == (3, 4)
    assert {c["model"] for r, c in cams.items() if "satellite" in r} == {"ORTHO"}
    # google: the configured share shows another building, and the truth file says which
    truth = json.loads((small_world / "meta" / "google_truth.json").read_text())
    assert set(truth) == {r for r in images if "/google/" in r}
    wrong = [r for r, shown in truth.items() if shown != r.split("/")[2]]
    assert len(wrong) == round(cfg.google_wrong_share * len(truth))
    world = json.loads((small_world / "meta" / "world.json").read_text())
    assert world["seed"] == cfg.seed and world["config"]["n_train"] == cfg.n_train
    assert (small_world / "meta" / "scene.ply").stat().st_size > 10_000


def test_same_seed_same_bytes(small_world: Path, tmp_path: Path):
    # a second run, rendered by a pool of two processes, must give the very same bytes
    again = generate_world(small_config(), tmp_path / "again", workers=2)
    assert _digest(again) == _digest(small_world)
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_other_seed_other_world():
    a, b = make_layout(small_config()), make_layout(small_config(seed=4))
    assert [x.id for x in a.buildings] != [x.id for x in b.buildings]


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "render_shots", boom)
    with pytest.raises(KeyboardInterrupt):
        generate_world(small_config(), tmp_path / "w")
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_foreign_dir(tmp_path: Path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a generated synthetic world"):
        generate_world(small_config(n_train=1, n_test=0, n_distractors=0, drone_images=3,
                                    street_per_building=0, google_per_building=0), out, workers=1)
    assert (out / "notes.txt").read_text() == "keep me"


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="drone_images"):
        gen.check_config(small_config(drone_images=10))


def test_bad_off_nadir_range_is_named():
    for bad in ([20.0, 5.0], [0.0, 75.0], [-5.0, 10.0], [10.0]):
        with pytest.raises(ValueError, match="satellite_off_nadir_deg"):
            gen.check_config(small_config(satellite_off_nadir_deg=bad))
    gen.check_config(small_config(satellite_off_nadir_deg=[0.0, 0.0]))   # nadir is fine


def test_geojson_footprints(tmp_path: Path):
    polys = [[[0, 0], [30, 0], [30, 20], [0, 20], [0, 0]],
             [[70, 10], [100, 10], [100, 50], [85, 50], [85, 25], [70, 25], [70, 10]],
             [[10, 80], [40, 80], [40, 110], [10, 110], [10, 80]]]
    fc = {"type": "FeatureCollection",
          "features": [{"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [p]}} for p in polys]}
    path = tmp_path / "campus.geojson"
    path.write_text(json.dumps(fc))
    layout = make_layout(small_config(n_train=2, n_test=1, n_distractors=0, footprints=str(path)))
    areas = sorted(round(b.footprint.area) for b in layout.buildings)
    assert areas == [600, 825, 900]
    assert layout.walk_lines  # street cameras have somewhere to stand
    bad = tmp_path / "bad.geojson"
    bad.write_text(json.dumps({"type": "FeatureCollection",
                               "features": [{"geometry": {"type": "Point", "coordinates": [0, 0]}}]}))
    with pytest.raises(ValueError, match="bad.geojson: feature 0"):
        make_layout(small_config(footprints=str(bad)))


def test_only_some_train_buildings_flown(tmp_path: Path):
    cfg = small_config(n_train=4, n_train_drone=1, n_test=1, n_distractors=0, drone_images=3,
                       google_per_building=0, street_per_building=1)
    root = generate_world(cfg, tmp_path / "w", workers=1)
    meta = json.loads((root / "meta" / "buildings.json").read_text())
    train = {i for i, b in meta.items() if b["split"] == "train"}
    flown = {p.name for p in (root / "train" / "drone").iterdir()}
    # no empty drone folders: the dataset validator counts those as a problem
    assert len(flown) == 1 and flown < train
    assert all(len(list((root / "train" / "drone" / b).iterdir())) == 3 for b in flown)
    assert {p.name for p in (root / "train" / "street").iterdir()} == train
    assert len(list((root / "test" / "query_drone").iterdir())) == 1   # test buildings are always flown
    from retrieval.dataset import validate_tree
    assert validate_tree(root, progress=False) == []
    with pytest.raises(ValueError, match="n_train_drone"):
        gen.check_config(small_config(n_train=2, n_train_drone=3))


def test_test_split_has_its_own_street_and_drone_counts(tmp_path: Path):
    # more street queries and fewer drone queries per test building; the training split keeps its own
    cfg = small_config(n_train=1, n_test=2, n_distractors=1, drone_images=6, test_drone_images=3,
                       street_per_building=1, test_street_per_building=3, google_per_building=0)
    root = generate_world(cfg, tmp_path / "w", workers=1)
    for b in (root / "test" / "query_street").iterdir():
        assert len(list(b.glob("*.jpg"))) == 3
        assert len(list((root / "test" / "query_drone" / b.name).glob("*.jpeg"))) == 3
        assert len(list((root / "test" / "gallery_drone" / b.name).glob("*.jpeg"))) == 3
    for b in (root / "train" / "street").iterdir():
        assert len(list(b.glob("*.jpg"))) == 1
        assert len(list((root / "train" / "drone" / b.name).glob("*.jpeg"))) == 6
    from retrieval.dataset import validate_tree
    assert validate_tree(root, progress=False) == []
    with pytest.raises(ValueError, match="test_drone_images"):
        gen.check_config(small_config(test_drone_images=4))
