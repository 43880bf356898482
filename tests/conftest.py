"""Shared fixtures: the tiny synthetic world (generated once, cached under tests/data) and paths."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
TINY = REPO / "assets" / "configs" / "tiny.yaml"


def shared_data() -> Path | None:
    for p in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if p.is_dir():
            return p
    return None


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    p = shared_data()
    if p is None:
        pytest.skip("../shared/data (real image sets) is not on this machine")
    return p


@pytest.fixture(scope="session")
def tiny_config():
    from pipeline.config import load_config

    return load_config(TINY)


@pytest.fixture(scope="session")
def tiny_world(tiny_config) -> Path:
    """The tiny synthetic world; regenerated only when the synth config changes."""
    from pipeline.cache import hash_json
    from synthetic.generate import generate_world

    key = hash_json(tiny_config.synth)
    root = TEST_DATA / f"tiny-world-{key}"
    if not (root / "meta" / "buildings.json").exists():
        TEST_DATA.mkdir(parents=True, exist_ok=True)
        for old in TEST_DATA.glob("tiny-world-*"):
            shutil.rmtree(old, ignore_errors=True)
        generate_world(tiny_config.synth, root)
    return root


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    # 2-core machines: keep BLAS/torch from oversubscribing when tests spawn processes
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "2"))
