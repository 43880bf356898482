"""A small synthetic world shared by the tests of this package (built once per session)."""
from __future__ import annotations

from pathlib import Path

import pytest

from synthetic.config import SynthConfig
from synthetic.generate import generate_world


def small_config(**over) -> SynthConfig:
    """Smaller than the `tiny` preset: a few seconds to generate, every view and split present."""
    base = dict(seed=3, n_train=2, n_test=2, n_distractors=1, drone_images=6, drone_size=96,
                satellite_size=96, satellite_gsd=1.0, street_size=96, street_per_building=2,
                google_per_building=3, google_wrong_share=0.5, trees_per_building=6, cars_per_building=4)
    base.update(over)
    return SynthConfig(**base)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory) -> Path:
    return generate_world(small_config(), tmp_path_factory.mktemp("synth") / "world", workers=1)
