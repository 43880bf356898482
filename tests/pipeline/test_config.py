from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_config

PRESETS = sorted((Path(__file__).resolve().parents[2] / "assets" / "configs").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_presets_load(preset):
    cfg = load_config(preset)
    assert cfg.name == preset.stem


def test_set_overrides_any_value(tmp_path):
    cfg = load_config(PRESETS[0], ["train.epochs=7", "render.point_size=3", "data.root=/x"])
    assert cfg.train.epochs == 7
    assert cfg.render.point_size == 3.0 and isinstance(cfg.render.point_size, float)
    assert cfg.data.root == "/x"


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochz: 3\n")
    with pytest.raises(ConfigError, match=r"train\.epochz: unknown key"):
        load_config(p)
    p.write_text("trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown section 'trian'"):
        load_config(p)


def test_bad_value_is_named(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: three\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: train\.epochs: expected an integer"):
        load_config(p)
    p.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load_config(PRESETS[0], ["epochs=3"])
