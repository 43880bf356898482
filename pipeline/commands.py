"""What each CLI command does, as plain functions returning an exit status."""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipeline.cache import MANIFEST, read_json, workdir_lock
from pipeline.config import Config
from pipeline.log import log
from pipeline.stage import StageError, run_stage
from pipeline.stages import ORDER, get_stage, upstream
from pipeline.summary import StageRun, run_summary


def validate(root: Path, decode: bool = True) -> int:
    from retrieval.dataset import format_table, read_tree, summary_table, validate_tree

    problems = validate_tree(root, decode=decode)
    if problems:
        for p in problems:
            print(p)
        print(f"{len(problems)} problem(s) in {root}")
        return 1
    print(format_table(summary_table(read_tree(root))))
    print(f"{root}: valid")
    return 0


def synth(cfg: Config, out: Path, preview: bool) -> int:
    from synthetic.generate import generate_world

    generate_world(cfg.synth, out, preview=preview)
    log.info("synthetic world written to %s", out)
    return 0


def _run_stages(cfg: Config, workdir: Path, names: list[str], force: set[str],
                runs: list[StageRun] | None = None) -> dict[str, dict]:
    """Run `names` in order; with `runs`, append how each went (cached or computed, seconds)."""
    manifests = {}
    forced = False
    with workdir_lock(workdir):
        for name in names:
            forced = forced or name in force  # a forced stage recomputes those after it too
            before = read_json(workdir / name / MANIFEST)
            t0 = time.time()
            manifests[name] = run_stage(get_stage(name), cfg, workdir, force=forced and name in force)
            seconds = time.time() - t0
            _print_summary(name, manifests[name], seconds)
            if runs is not None:  # a cached stage hands back its manifest untouched
                runs.append(StageRun(name, cached=manifests[name] == before, seconds=seconds))
    return manifests


def _print_summary(name: str, manifest: dict, seconds: float) -> None:
    counts = manifest.get("counts") or {}
    parts = [f"{v} {k}" for k, v in counts.items() if v]
    summ = manifest.get("summary") or {}
    short = {k: v for k, v in summ.items() if isinstance(v, (int, float, str)) and len(str(v)) < 40}
    extra = ", ".join(f"{k}={v}" for k, v in list(short.items())[:6])
    log.info("[%s] %.1f s%s%s", name, seconds, (" | " + ", ".join(parts)) if parts else "", (" | " + extra) if extra else "")


def run_pipeline(cfg: Config, workdir: Path, until: str = "report", force: list[str] | None = None) -> int:
    if until not in ORDER:
        raise StageError(f"--until {until!r}: unknown stage (stages: {', '.join(ORDER)})")
    names = upstream(until)
    for f in force or []:
        if f not in ORDER:
            raise StageError(f"--force {f!r}: unknown stage")
    runs: list[StageRun] = []
    _run_stages(cfg, workdir, names, set(force or []), runs)
    print(run_summary(workdir, runs, title=f"SkyLink {cfg.name}"))
    return 0


def run_one_stage(cfg: Config, workdir: Path, name: str, force: bool = False) -> int:
    _run_stages(cfg, workdir, [name], {name} if force else set())
    return 0


def reconstruct_folder(cfg: Config, images: Path, out: Path) -> int:
    from reconstruction.scene import reconstruct_scene

    if not Path(images).is_dir():
        raise FileNotFoundError(f"{images}: image folder not found")
    quality = reconstruct_scene(Path(images), Path(out), cfg.reconstruct)
    print(json.dumps(quality, indent=2, default=str))
    return 0


def rebuild_3d(cfg: Config, workdir: Path, region: Path) -> int:
    region = Path(region).resolve()
    if not region.is_dir():
        raise FileNotFoundError(f"{region}: region folder not found")
    cfg.data.source = "path"
    cfg.data.root = str(region)
    manifests = _run_stages(cfg, workdir, ["data", "reconstruct", "render"], set())
    c = manifests["reconstruct"].get("counts") or {}
    print(f"rebuild-3d {region}: {c.get('new', 0)} new, {c.get('changed', 0)} changed, "
          f"{c.get('cached', 0)} cached, {c.get('failed', 0)} failed buildings")
    return 0


def inspect(workdir: Path, building: str, scale: int, screenshot: Path | None, frustums: bool = False,
            sparse: bool = False, mesh: bool = False) -> int:
    from reconstruction.inspect import inspect as open_scene

    scene = Path(workdir) / "reconstruct" / building
    if not (scene / f"scale{scale}.ply").exists():
        m = read_json(Path(workdir) / "reconstruct" / MANIFEST) or {}
        known = ", ".join(k for k, v in m.get("items", {}).items() if v.get("status") == "ok") or "none"
        raise FileNotFoundError(f"{scene}: no reconstruction of building {building} (reconstructed: {known})")
    open_scene(scene, scale=scale, screenshot=screenshot, frustums=frustums, sparse=sparse, mesh=mesh)
    if screenshot:
        print(f"screenshot: {screenshot}")
    return 0


def export_answer(workdir: Path, out: Path) -> int:
    from retrieval.submission import export_from_evaluation

    export_from_evaluation(Path(workdir) / "evaluate", Path(out))
    print(f"submission: {out}")
    return 0


def ablate(cfg: Config, workdir: Path, seeds: int, variants: list[str], report: bool = True) -> int:
    from pipeline.ablation import run_ablation

    run_ablation(cfg, workdir, seeds=seeds, variants=variants, report=report)
    return 0
