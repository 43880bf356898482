"""Planted bad inputs through `validate`, the CLI and the stages: a clear message naming the file,
a non-zero exit, and finished work in the work dir never lost or overwritten by a failing run."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.pipeline.test_dataset import _img, make_tree

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "assets" / "configs" / "tiny.yaml"


def skylink(*args):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True)


def _plant(root: Path, kind: str) -> Path:
    """Plant one kind of bad input in a valid tree; return the path the message must name."""
    d = root / "train" / "drone" / "0001"
    if kind == "truncated":
        p = d / "image-02.jpeg"
        p.write_bytes(p.read_bytes()[:200])
    elif kind == "zero-byte":
        p = d / "image-03.jpeg"
        p.write_bytes(b"")
    elif kind == "text-as-jpg":
        p = root / "train" / "street" / "0001" / "note.jpg"
        p.write_text("this is not an image\n")
    elif kind == "no-satellite":
        p = root / "train" / "satellite" / "0002"
        (p / "0002.jpg").unlink()
    elif kind == "empty-drone":
        p = root / "train" / "drone" / "0002"
        for f in p.iterdir():
            f.unlink()
    elif kind == "duplicated-id":
        p = root / "test" / "gallery_satellite" / "0002"
        _img(p / "0002.jpg")
    else:
        raise ValueError(kind)
    return p


KINDS = ["truncated", "zero-byte", "text-as-jpg", "no-satellite", "empty-drone", "duplicated-id"]


@pytest.mark.parametrize("kind", KINDS)
def test_bad_input_is_named_by_validate_and_by_the_data_stage(tmp_path, kind):
    good = make_tree(tmp_path / "good")
    work = tmp_path / "work"
    base = ["--config", TINY, "--workdir", work, "--set", "data.source=path"]
    ok = skylink("data", *base, "--set", f"data.root={good}")
    assert ok.returncode == 0, ok.stderr
    manifest_before = (work / "data" / "manifest.json").read_text()
    index_before = (work / "data" / "index.json").read_text()

    bad = make_tree(tmp_path / "bad")
    planted = _plant(bad, kind)
    v = skylink("validate", bad)
    assert v.returncode == 1
    assert str(planted) in v.stdout, v.stdout

    run = skylink("data", *base, "--set", f"data.root={bad}")
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("skylink: error:") and str(bad) in last, run.stderr
    assert "Traceback" not in run.stderr
    # the finished work of the earlier run is untouched
    assert (work / "data" / "manifest.json").read_text() == manifest_before
    assert (work / "data" / "index.json").read_text() == index_before
    assert (work / "data" / "tree").resolve() == good.resolve()


def test_grayscale_and_very_large_images_are_valid_and_embed(tmp_path):
    from retrieval.backbone import preprocess

    gray = _img(tmp_path / "t" / "train" / "street" / "0001" / "g.jpg", size=(40, 30), gray=True)
    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), np.random.default_rng(0).integers(0, 255, (4000, 6000, 3), dtype=np.uint8))
    from retrieval.dataset import check_image

    assert check_image(gray) is None and check_image(big) is None
    x = preprocess([gray, big], 64)
    assert tuple(x.shape) == (2, 3, 64, 64) and bool(x.isfinite().all())


def test_undecodable_image_in_embedding_names_the_file(tmp_path):
    from retrieval.backbone import preprocess

    bad = tmp_path / "street.jpg"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="street.jpg"):
        preprocess([bad], 64)


@pytest.mark.parametrize("override, key", [
    ("train.epochs=abc", "train.epochs"),
    ("train.epokhs=3", "train.epokhs"),
    ("render.point_size=[1,2]", "render.point_size"),
])
def test_unreadable_config_value_is_one_clear_line(tmp_path, override, key):
    p = skylink("run", "--config", TINY, "--workdir", tmp_path / "w", "--set", override)
    assert p.returncode == 1
    assert key in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_bad_yaml_file_is_named(tmp_path):
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("train:\n  epochs: [1,\n")
    p = skylink("run", "--config", cfg, "--workdir", tmp_path / "w")
    assert p.returncode == 1 and str(cfg) in p.stderr and "not valid YAML" in p.stderr


def test_second_run_on_a_busy_workdir_refuses(tmp_path):
    import os

    work = tmp_path / "w"
    work.mkdir()
    (work / ".lock").write_text(str(os.getppid()))  # a live process holds it
    p = skylink("data", "--config", TINY, "--workdir", work)
    assert p.returncode == 1 and "in use by another skylink run" in p.stderr


def test_stage_before_its_inputs_says_which_to_run(tmp_path):
    p = skylink("render", "--config", TINY, "--workdir", tmp_path / "w")
    assert p.returncode == 1 and "needs 'reconstruct'" in p.stderr
