"""The run configuration: one YAML file of sections, loaded into the libraries' dataclasses.

Each library owns the dataclasses of its own sections; this module composes them, rejects unknown
keys and badly typed values with the key's name, applies `--set section.key=value` overrides, and
checks every value's range, choices and cross-field rules (pipeline/validation.py) before any stage runs.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reconstruction.config import ReconstructConfig, RenderConfig
from retrieval.config import EnhanceConfig, EvaluateConfig, IndexConfig, TrainConfig, key_dict
from synthetic.config import SynthConfig

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "assets" / "configs" / "demo.yaml"


@dataclass
class DataConfig:
    source: str = "synthetic"        # synthetic | path
    root: str | None = None          # a University-1652-layout tree when source == path
    validate: bool = True


@dataclass
class ReportConfig:
    n_examples: int = 6              # retrieval examples shown on the page
    snapshots: bool = True           # point-cloud snapshots per scale
    max_buildings: int = 6           # buildings with point-cloud snapshots (the table lists all)
    render_buildings: int = 2        # buildings whose renders and priors are shown
    examples_top_k: int = 5          # gallery tiles shown per retrieval example
    curve_max_k: int = 50            # last K of the Recall@K curve


@dataclass
class ExecutorConfig:
    """How per-building work is run; never part of a cache key (it does not change results)."""

    kind: str = "local"              # local | ray
    workers: int = 1
    ray_address: str | None = None


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    reconstruct: ReconstructConfig = field(default_factory=ReconstructConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    enhance: EnhanceConfig = field(default_factory=EnhanceConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    name: str = "custom"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class ConfigError(ValueError):
    pass


def load_config(path: Path | str | None = None, overrides: list[str] | None = None) -> Config:
    """Load a YAML preset (default: the demo) and apply `section.key=value` overrides."""
    path = Path(path) if path else DEFAULT_CONFIG
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    raw.setdefault("name", path.stem)
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        section, _, name = key.partition(".")
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"--set {item!r}: {section} is not a section")
        raw[section][name] = yaml.safe_load(value) if value != "" else None
    return from_dict(raw, source=str(path))


def from_dict(raw: dict, source: str = "config") -> Config:
    hints = typing.get_type_hints(Config)
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"{source}: unknown section {key!r} (known: {', '.join(hints)})")
        cls = hints[key]
        if dataclasses.is_dataclass(cls):
            if value is None:
                value = {}
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: section {key!r} must be a mapping")
            kwargs[key] = _build(cls, value, f"{source}: {key}")
        else:
            kwargs[key] = _coerce(value, cls, f"{source}: {key}")
    return validate_config(Config(**kwargs), source)


def validate_config(cfg: Config, source: str = "config") -> Config:
    """`cfg` when every value is allowed; else a ConfigError naming each bad key, its value and what is allowed."""
    from pipeline.validation import problems

    found = problems(cfg)
    if found:
        raise ConfigError(f"{source}: " + "; ".join(found))
    return cfg


def _build(cls: type, values: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for k, v in values.items():
        if k not in names:
            raise ConfigError(f"{where}.{k}: unknown key (known: {', '.join(sorted(names))})")
        out[k] = _coerce(v, hints[k], f"{where}.{k}")
    return cls(**out)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def section_dict(cfg: Config, name: str) -> dict:
    """A section as its stage's cache key hashes it (`retrieval.config.key_dict`)."""
    return key_dict(getattr(cfg, name))
