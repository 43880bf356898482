"""Bad config values are refused when the config is loaded, naming the key, the value and what is allowed;
every CLI command turns a user's error into one line and a non-zero exit (`--debug`: the traceback)."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.config import Config, ConfigError, load_config
from pipeline.validation import CROSS_RULES, RULES

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "assets" / "configs" / "tiny.yaml"


def _config_keys() -> list[str]:
    keys = []
    for f in dataclasses.fields(Config):
        default = getattr(Config(), f.name)
        if dataclasses.is_dataclass(default):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(default)]
        else:
            keys.append(f.name)
    return keys


def test_every_config_field_has_a_rule():
    """A field added to any section's dataclass needs its rule in pipeline/validation.py."""
    missing = [k for k in _config_keys() if k not in RULES]
    assert not missing, f"add a rule to pipeline/validation.py RULES for: {', '.join(missing)}"


def test_every_default_and_preset_passes_its_rules():
    from pipeline.validation import problems

    assert problems(Config()) == []
    for preset in sorted((REPO / "assets" / "configs").glob("*.yaml")):
        load_config(preset)
    assert all(k in RULES for r in CROSS_RULES for k in r.keys)


BAD = [
    # (override, message part)
    ("data.source=s3", "data.source: 's3' is not allowed (allowed: one of synthetic, path)"),
    ("data.source=path", "data.root: not set, but data.source is 'path'"),
    ("synth.n_distractors=-1", "synth.n_distractors: -1 is out of range (allowed: an integer >= 0)"),
    ("synth.n_train=1", "synth.n_train: 1 is out of range (allowed: an integer >= 2)"),
    ("synth.drone_images=20", "synth.drone_images: 20 is not allowed (allowed: a multiple of synth.drone_groups = 3"),
    ("synth.floors=[9,2]", "synth.floors: [9, 2] is out of range (allowed: [low, high] with low <= high"),
    ("reconstruct.matcher=fast", "reconstruct.matcher: 'fast' is not allowed (allowed: one of auto, exhaustive, sequential, spatial)"),
    ("reconstruct.min_registered_ratio=0", "reconstruct.min_registered_ratio: 0.0 is out of range (allowed: a number in (0, 1])"),
    ("render.image_size=0", "render.image_size: 0 is out of range (allowed: an integer >= 8)"),
    ("render.device=gpu", "render.device: 'gpu' is not allowed (allowed: one of auto, cpu, cuda)"),
    ("render.scales=[1,4]", "render.scales: [1, 4] is out of range (allowed: scales 1..reconstruct.n_scales = 3)"),
    ("enhance.keep_share=1.5", "enhance.keep_share: 1.5 is out of range (allowed: a number in (0, 1])"),
    ("enhance.score=median", "enhance.score: 'median' is not allowed"),
    ("train.epochs=-3", "train.epochs: -3 is out of range (allowed: an integer >= 1)"),
    ("train.batch_size=1", "train.batch_size: 1 is out of range (allowed: an integer >= 2)"),
    ("train.lr=-1", "train.lr: -1.0 is out of range (allowed: a number > 0)"),
    ("train.head=mixvpr", "train.head: 'mixvpr' is not allowed (allowed: one of pafa, gem)"),
    ("train.backbone=resnet50", "train.backbone: 'resnet50' is not allowed (allowed: efficientnet_lite0 or timm:<model name>)"),
    ("train.render_modalities=[color,sound]", "train.render_modalities: ['color', 'sound'] is not allowed"),
    ("train.scales=[3]", None),  # allowed: a subset of render.scales
    ("index.kind=lsh", "index.kind: 'lsh' is not allowed (allowed: one of flat, ivf, hnsw, auto)"),
    ("index.nprobe=0", "index.nprobe: 0 is out of range (allowed: an integer >= 1)"),
    ("evaluate.ks=[]", "evaluate.ks: [] is out of range (allowed: a non-empty list of distinct values"),
    ("evaluate.top_k=0", "evaluate.top_k: 0 is out of range"),
    ("report.n_examples=-2", "report.n_examples: -2 is out of range (allowed: an integer >= 0)"),
    ("executor.workers=0", "executor.workers: 0 is out of range (allowed: an integer >= 1)"),
    ("executor.kind=slurm", "executor.kind: 'slurm' is not allowed (allowed: one of local, ray)"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[b[0] for b in BAD])
def test_bad_value_is_refused_at_load_naming_key_value_and_what_is_allowed(override, message):
    if message is None:
        load_config(TINY, [override])
        return
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_every_section_has_a_bad_value_in_the_table():
    sections = {f.name for f in dataclasses.fields(Config) if dataclasses.is_dataclass(getattr(Config(), f.name))}
    assert sections <= {b[0].split(".")[0] for b in BAD if b[1]}


def test_a_bad_value_stops_the_run_before_any_stage(tmp_path, capsys):
    work = tmp_path / "w"
    rc = main(["run", "--config", str(TINY), "--workdir", str(work), "--set", "train.epochs=-3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("skylink: error:") and "train.epochs: -3 is out of range" in err[0]
    assert not work.exists()


def test_a_bad_flag_value_is_refused_too(tmp_path, capsys):
    rc = main(["data", "--config", str(TINY), "--workdir", str(tmp_path / "w"), "--workers", "-2"])
    assert rc == 1 and "executor.workers: -2 is out of range" in capsys.readouterr().err


def _skylink(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True)


def _two_images(folder: Path) -> Path:
    import cv2
    import numpy as np

    folder.mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(folder / f"img{i}.jpg"), np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_too_few_images_is_one_line_and_debug_shows_the_traceback(tmp_path, capsys):
    from reconstruction.sfm import ReconstructionError

    images = _two_images(tmp_path / "imgs")
    p = _skylink("reconstruct", "--images", images, "--out", tmp_path / "out")
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert lines[0].startswith("skylink: error:") and "need at least 3" in lines[0] and str(images) in lines[0]
    # --debug, before or after the command: the exception escapes main(), so Python prints its traceback
    for debug in (["--debug", "reconstruct"], ["reconstruct", "--debug"]):
        with pytest.raises(ReconstructionError, match="need at least 3"):
            main([*debug, "--images", str(images), "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("args, part", [
    (["export-answer", "--workdir", "{tmp}/nowork"], "nowork"),
    (["inspect", "0001", "--workdir", "{tmp}/nowork", "--screenshot", "{tmp}/s.png"], "no reconstruction of building 0001"),
    (["rebuild-3d", "--region", "{tmp}/noregion", "--workdir", "{tmp}/w"], "region folder not found"),
    (["run", "--config", "{tmp}/missing.yaml"], "config file not found"),
    (["run", "--config", str(TINY), "--until", "deploy", "--workdir", "{tmp}/w"], "--until 'deploy': unknown stage"),
])
def test_user_errors_of_each_command_are_one_line(tmp_path, capsys, args, part):
    rc = main([a.replace("{tmp}", str(tmp_path)) for a in args])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("skylink: error:") and part in err[0], err
