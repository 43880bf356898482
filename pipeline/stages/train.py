"""Stage `train`: the Siamese PAFA network aligned against the 3D renders (and GREM's extra street images).

Writes into WORKDIR/train: checkpoints/epoch_NNN.pt (resumable), model.pt (final, with the resolved
config), history.json, tb/ (TensorBoard), render_features/ (the frozen encoder's cached view features).
With `train.nproc_per_node > 1` training runs under torchrun (DDP) in child processes.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from pipeline.stage import Stage, StageContext, StageError
from retrieval.paths import record_path


def _input_or_none(ctx: StageContext, name: str, wanted: bool) -> Path | None:
    if not wanted:
        return None
    path = ctx.input(name)
    if not path.is_dir() or not any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
        ctx.log.warning("train: %s has no per-building output; training without it", path)
        return None
    return path


def _torchrun(ctx: StageContext, tree: Path, renders: Path | None, grem: Path | None, resume: bool) -> Path:
    from retrieval.train import FINAL

    cfg = ctx.section
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc_per_node}",
           "-m", "retrieval.train", "--data", str(tree), "--out", str(ctx.out)]
    if renders is not None:
        cmd += ["--renders", str(renders)]
    if grem is not None:
        cmd += ["--grem", str(grem)]
    if not resume:
        cmd.append("--no-resume")
    for key, value in dataclasses.asdict(cfg).items():
        if key != "nproc_per_node":
            cmd += ["--set", f"{key}={json.dumps(value)}"]
    ctx.log.info("train: torchrun with %d processes", cfg.nproc_per_node)
    proc = subprocess.run(cmd, env=os.environ.copy())
    if proc.returncode != 0:
        raise StageError(f"train: torchrun exited with status {proc.returncode} (see the log above)")
    return ctx.out / FINAL


def run(ctx: StageContext) -> dict:
    from retrieval.train import HISTORY, train  # here: a cached run never loads torch

    cfg = ctx.section
    tree = (ctx.input("data") / "tree").resolve()
    if not tree.is_dir():
        raise StageError(f"{tree}: dataset tree missing; run the data stage")
    renders = _input_or_none(ctx, "render", cfg.use_3d)
    grem = _input_or_none(ctx, "enhance", cfg.use_grem)
    # Checkpoints resume only a run on the same inputs: the trainer's own check sees paths, not what
    # the renders and GREM lists hold, so a rebuilt upstream must start afresh (the marker is hidden:
    # it is not part of the stage's output digest).
    marker = ctx.out / ".inputs-key"
    resume = not ctx.force and marker.is_file() and marker.read_text().strip() == ctx.key
    ctx.out.mkdir(parents=True, exist_ok=True)
    marker.write_text(ctx.key + "\n")
    if cfg.nproc_per_node > 1:
        final = _torchrun(ctx, tree, renders, grem, resume)
    else:
        final = train(tree, ctx.out, cfg, renders=renders, grem=grem, resume=resume)
    history = json.loads((ctx.out / HISTORY).read_text()) if (ctx.out / HISTORY).is_file() else []
    last = history[-1] if history else {}
    return {"checkpoint": record_path(final, ctx.workdir), "epochs": len(history),
            "loss": last.get("loss_total"), "temperature": last.get("temperature"),
            "val_r1": last.get("val_r1"), "images_per_s": last.get("images_per_s"), "threads": last.get("threads")}


STAGE = Stage(name="train", sections=("train",), needs=("data", "render", "enhance"), run=run,
              # resume state, logs and the feature cache: the final model.pt is what later stages read
              volatile=("checkpoints/*", "tb/*", "render_features/*"),
              help="train the Siamese PAFA network aligned against the 3D renders")
