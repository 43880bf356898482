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
