"""The shipped worlds keep their promises: a test split that can show a gain, a validation world of the
demo's shape, an all-flown world (docs: issue 12, "Evaluation that can see a gain")."""
from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "assets" / "configs"


def _test_split(name: str) -> tuple[int, int, int]:
    """Street queries, gallery tiles and distractor tiles of a preset's synthetic test split."""
    s = load_config(CONFIGS / name).synth
    streets = s.street_per_building if s.test_street_per_building is None else s.test_street_per_building
    return s.n_test * streets, s.n_test + s.n_distractors, s.n_distractors


def test_demo_split_can_show_a_gain():
    for name in ("demo.yaml", "validation.yaml", "allflown.yaml"):
        queries, gallery, distractors = _test_split(name)
        assert queries >= 300, name
        assert distractors >= 0.25 * gallery, name


def test_validation_world_is_the_demo_with_another_seed():
    demo = yaml.safe_load((CONFIGS / "demo.yaml").read_text())
    val = yaml.safe_load((CONFIGS / "validation.yaml").read_text())
    assert val["synth"].pop("seed") != demo["synth"].pop("seed")
    assert val == demo


def test_allflown_flies_every_training_building():
    s = load_config(CONFIGS / "allflown.yaml").synth
    assert s.n_train_drone is None or s.n_train_drone == s.n_train
