"""The UAVM2025 answer.zip export and the flat challenge layout."""
from __future__ import annotations

import zipfile

import cv2
import numpy as np
import pytest

from retrieval.submission import (
    SubmissionError,
    export_answer,
    generate_query_order,
    read_answer,
    read_flat_layout,
    read_query_order,
)


def _img(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.zeros((4, 4, 3), np.uint8))


@pytest.fixture()
def flat(tmp_path):
    root = tmp_path / "uavm"
    for n in ("qB.jpeg", "qA.jpeg", "qC.jpeg"):
        _img(root / "workshop_query_street" / n)
    for i in range(12):
        _img(root / "workshop_gallery_satellite" / f"g{i:02d}.jpg")
    (root / "query_street_name.txt").write_text("qC.jpeg\nqA.jpeg\nqB.jpeg\n")
    return root


def test_answer_format_and_order(flat, tmp_path):
    layout = read_flat_layout(flat)
    assert [p.name for p in layout.query_paths] == ["qC.jpeg", "qA.jpeg", "qB.jpeg"]   # the file's order
    assert len(layout.gallery_paths) == 12
    names = read_query_order(flat / "query_street_name.txt")
    gallery = [p.name for p in layout.gallery_paths]
    ranked = [gallery[i:i + 10] for i in range(3)]
    out = export_answer(names, ranked, tmp_path / "answer.zip", query_folder=flat / "workshop_query_street",
                        gallery_names=gallery)
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["answer.txt"]
        text = zf.read("answer.txt").decode()
    lines = text.splitlines()
    assert len(lines) == 3 and text.endswith("\n")
    assert lines[0].split("\t") == [f"g{i:02d}" for i in range(10)]     # no extensions, tabs
    assert lines[2].split("\t")[0] == "g02"
    assert read_answer(out) == [line.split("\t") for line in lines]


def test_refuses_small_gallery_and_mismatched_queries(flat, tmp_path):
    names = ["qC.jpeg", "qA.jpeg", "qB.jpeg"]
    small = [f"g{i:02d}.jpg" for i in range(9)]
    with pytest.raises(SubmissionError, match="fewer than"):
        export_answer(names, [small] * 3, tmp_path / "a.zip", gallery_names=small)
    with pytest.raises(SubmissionError, match="fewer than 10"):
        export_answer(names, [small] * 3, tmp_path / "a.zip")
    full = [f"g{i:02d}.jpg" for i in range(10)]
    with pytest.raises(SubmissionError, match="not listed"):
        export_answer(names[:2], [full] * 2, tmp_path / "a.zip", query_folder=flat / "workshop_query_street")
    with pytest.raises(SubmissionError, match="not in the folder"):
        export_answer([*names, "qZ.jpeg"], [full] * 4, tmp_path / "a.zip", query_folder=flat / "workshop_query_street")
    with pytest.raises(SubmissionError, match="twice"):
        export_answer(names, [full[:9] + full[:1]] * 3, tmp_path / "a.zip")
    with pytest.raises(SubmissionError, match="not in the gallery"):
        export_answer(names, [full] * 3, tmp_path / "a.zip", gallery_names=full[1:] + ["x.jpg"])
    assert not (tmp_path / "a.zip").exists()
    (flat / "query_street_name.txt").write_text("qC.jpeg\nqA.jpeg\n")
    with pytest.raises(SubmissionError, match="qB.jpeg"):
        read_flat_layout(flat)


def test_generated_order_for_university_layout(tmp_path):
    qdir = tmp_path / "test" / "query_street"
    for b in ("0002", "0001"):
        for j in range(2):
            _img(qdir / b / f"s{j}.jpg")
    names = sorted(p.relative_to(qdir).as_posix() for p in qdir.rglob("*.jpg"))
    order = generate_query_order(names, tmp_path / "query_street_name.txt")
    assert read_query_order(order) == ["0001/s0.jpg", "0001/s1.jpg", "0002/s0.jpg", "0002/s1.jpg"]
    full = [f"{i:04d}.jpg" for i in range(10)]
    export_answer(names, [full] * 4, tmp_path / "answer.zip", query_folder=qdir)
    assert len(read_answer(tmp_path / "answer.zip")) == 4
