"""Dataset reading and validation: every planted problem is listed with its path."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from retrieval.dataset import read_tree, summary_table, validate_tree


def _img(path: Path, size=(24, 32), gray=False, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    im = rng.integers(0, 255, (*size, 1 if gray else 3), dtype=np.uint8)
    cv2.imwrite(str(path), im)
    return path


def make_tree(root: Path) -> Path:
    for b in ("0001", "0002"):
        _img(root / "train" / "satellite" / b / f"{b}.jpg")
        for i in (1, 2, 3):
            _img(root / "train" / "drone" / b / f"image-{i:02d}.jpeg", seed=i)
        _img(root / "train" / "street" / b / "s1.jpg")
        (root / "train" / "google" / b).mkdir(parents=True)
    _img(root / "train" / "google" / "0001" / "g1.jpg")
    for b in ("0003", "0004"):
        _img(root / "test" / "gallery_satellite" / b / f"{b}.jpg")
        _img(root / "test" / "query_drone" / b / "image-01.jpeg")
    _img(root / "test" / "query_street" / "0003" / "q.jpg", gray=True)
    return root


def test_valid_tree_reads_and_counts(tmp_path):
    root = make_tree(tmp_path / "u")
    assert validate_tree(root) == []
    records = read_tree(root)
    rows = {(r["split"], r["folder"]): r for r in summary_table(records)}
    assert rows[("train", "drone")] == {"split": "train", "folder": "drone", "buildings": 2, "images": 6}
    assert rows[("test", "gallery_satellite")]["buildings"] == 2
    assert rows[("train", "google")]["images"] == 1
    q = [r for r in records if r.role == "query" and r.view == "street"]
    assert len(q) == 1 and q[0].building == "0003"


def test_every_planted_problem_is_listed(tmp_path):
    root = make_tree(tmp_path / "u")
    d = root / "train" / "drone" / "0001"
    good = (d / "image-01.jpeg").read_bytes()
    (d / "image-02.jpeg").write_bytes(good[: len(good) // 2])          # truncated
    (d / "image-03.jpeg").write_bytes(b"")                               # zero bytes
    (root / "train" / "street" / "0001" / "notes.jpg").write_text("hello")  # text named .jpg
    (root / "train" / "street" / "0001" / "readme.txt").write_text("x")     # non-image file
    _img(root / "train" / "street" / "12" / "a.jpg")                     # id not 4 digits
    (root / "train" / "satellite" / "0002" / "0002.jpg").unlink()         # building without satellite
    (root / "train" / "drone" / "0005").mkdir()                          # empty drone folder
    _img(root / "test" / "query_street" / "0009" / "q.jpg")              # query id not in gallery
    _img(root / "test" / "gallery_satellite" / "0001" / "0001.jpg")       # id in train and test
    problems = {(str(p.path.relative_to(root)), p.message) for p in validate_tree(root, progress=False)}
    text = "\n".join(f"{a}: {b}" for a, b in sorted(problems))
    expect = [
        ("train/drone/0001/image-02.jpeg", "not a decodable image"),
        ("train/drone/0001/image-03.jpeg", "zero-byte file"),
        ("train/street/0001/notes.jpg", "not a decodable image"),
        ("train/street/0001/readme.txt", "not an image file"),
        ("train/street/12", "not a 4-digit"),
        ("train/satellite/0002", "satellite folder is empty"),
        ("train/drone/0005", "empty building folder"),
        ("test/query_street/0009", "query id missing from gallery_satellite"),
        ("test/gallery_satellite/0001", "duplicated id"),
    ]
    for path, msg in expect:
        assert any(p == path and msg in m for p, m in problems), f"{path}: {msg} not in\n{text}"


def test_missing_view_folder(tmp_path):
    root = make_tree(tmp_path / "u")
    import shutil

    shutil.rmtree(root / "train" / "street")
    problems = validate_tree(root, progress=False)
    assert [str(p) for p in problems] == [f"{root / 'train' / 'street'}: missing view folder"]


def test_cli_validate_exit_codes(tmp_path):
    root = make_tree(tmp_path / "u")
    ok = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", str(root)], capture_output=True, text=True)
    assert ok.returncode == 0 and "valid" in ok.stdout and "gallery_satellite" in ok.stdout
    (root / "train" / "street" / "0002" / "s1.jpg").write_bytes(b"")
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "validate", str(root)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert f"{root / 'train' / 'street' / '0002' / 's1.jpg'}: zero-byte file" in bad.stdout


def test_uavm_layout(tmp_path):
    root = tmp_path / "w"
    for n in ("a1.jpg", "b2.jpg"):
        _img(root / "workshop_query_street" / n)
    _img(root / "workshop_gallery_satellite" / "x.jpg")
    (root / "query_street_name.txt").write_text("b2.jpg\na1.jpg\n")
    assert validate_tree(root, progress=False) == []
    assert {r.role for r in read_tree(root)} == {"query", "gallery"}
    (root / "query_street_name.txt").write_text("b2.jpg\nzz.jpg\n")
    msgs = [p.message for p in validate_tree(root, progress=False)]
    assert any("zz.jpg" in m for m in msgs) and any("not listed" in m for m in msgs)
