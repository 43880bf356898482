"""Recorded paths: work-dir relative inside the work dir (so a moved work dir still reads), absolute outside."""
import os
from pathlib import Path

import pytest

from retrieval.paths import existing_path, record_path, recorded_path


def test_inside_is_relative_outside_absolute_and_links_are_kept(tmp_path, monkeypatch):
    work, data = tmp_path / "work", tmp_path / "dataset"
    (work / "evaluate").mkdir(parents=True)
    data.mkdir()
    (work / "data").mkdir()
    os.symlink(data, work / "data" / "tree")
    monkeypatch.chdir(tmp_path)
    # written relative to the cwd or absolute, the same file is recorded the same way
    assert record_path("work/evaluate/q.txt", "work") == "evaluate/q.txt"
    assert record_path(work / "evaluate" / "q.txt", Path("work")) == "evaluate/q.txt"
    # a linked dataset is reached through the work dir's link; its real folder is outside: absolute
    assert record_path(work / "data" / "tree" / "x.jpg", work) == "data/tree/x.jpg"
    assert record_path(data / "x.jpg", work) == str(data / "x.jpg")
    assert recorded_path("evaluate/q.txt", work) == work / "evaluate" / "q.txt"
    assert recorded_path(str(data), work) == data


def test_a_missing_folder_outside_the_work_dir_is_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"gone: data root not found \(outside the work dir"):
        existing_path(str(tmp_path / "gone"), tmp_path / "work", "data root")


def test_an_index_and_evaluation_moved_elsewhere_still_export_from_another_cwd(tmp_path, monkeypatch):
    """index.json and metrics.json name the tree and the query order relative to the work dir, so the
    moved copy exports its answer from any folder (the original is gone)."""
    import json
    import shutil

    import cv2
    import numpy as np
    import torch.nn.functional as F

    from retrieval.evaluate import evaluate_index
    from retrieval.search import index_tree
    from retrieval.submission import export_from_evaluation, read_answer

    work = tmp_path / "work"
    tree = work / "data" / "tree" / "test"
    rng = np.random.default_rng(0)
    for i in range(12):  # 12 tiles (an answer needs 10 names per query), 2 with street queries
        b = f"{i + 1:04d}"
        colour = rng.integers(0, 256, (16, 16, 3)).astype(np.uint8)
        (tree / "gallery_satellite" / b).mkdir(parents=True)
        cv2.imwrite(str(tree / "gallery_satellite" / b / f"{b}.jpg"), colour)
        if i < 2:
            (tree / "query_street" / b).mkdir(parents=True)
            cv2.imwrite(str(tree / "query_street" / b / "s0.jpg"), colour)

    def encoder(x):  # mean colour: enough to rank, independent of the model code
        return F.adaptive_avg_pool2d(x.float(), 1).flatten(1)

    monkeypatch.chdir(tmp_path)
    meta = index_tree(encoder, Path("work/data/tree"), Path("work/index"), image_size=16, device="cpu",
                      index_device="cpu", progress=False)
    res = evaluate_index(Path("work/index"), Path("work/evaluate"), device="cpu", index_device="cpu")
    assert meta["root"] == "data/tree" and res["answer"]["query_order"] == "evaluate/query_street_name.txt"
    shutil.move(str(work), str(tmp_path / "moved"))
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    out = export_from_evaluation(Path("../moved/evaluate"), Path("sub.zip"))
    assert read_answer(out) == read_answer(tmp_path / "moved" / "evaluate" / "answer.txt")
    again = evaluate_index(Path("../moved/index"), Path("../moved/evaluate"), device="cpu", index_device="cpu")
    assert again["answer"]["written"] and json.loads((tmp_path / "moved" / "index" / "index.json").read_text())["root"] == "data/tree"
