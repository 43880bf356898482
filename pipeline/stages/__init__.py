"""The stages in pipeline order. Each module `pipeline/stages/<name>.py` defines `STAGE`."""
from __future__ import annotations

import importlib

from pipeline.stage import Stage, StageError

ORDER = ("data", "reconstruct", "render", "enhance", "train", "index", "evaluate", "report")


def get_stage(name: str) -> Stage:
    if name not in ORDER:
        raise StageError(f"unknown stage {name!r} (stages: {', '.join(ORDER)})")
    try:
        module = importlib.import_module(f"pipeline.stages.{name}")
    except ModuleNotFoundError as e:
        if e.name == f"pipeline.stages.{name}":
            raise StageError(f"stage {name!r} is not built yet in this version of SkyLink") from None
        raise
    return module.STAGE


def upstream(name: str) -> list[str]:
    """The stage and everything it depends on, in pipeline order."""
    needed: set[str] = set()

    def visit(n: str) -> None:
        if n in needed:
            return
        needed.add(n)
        for dep in get_stage(n).needs:
            visit(dep)

    visit(name)
    return [n for n in ORDER if n in needed]
