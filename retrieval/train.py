"""Training of the SkyLink network: street, satellite and cached 3D-render features aligned with
cross-view and self-supervised InfoNCE (one sample per building per batch).

Where things are: the batches (flown buildings gathered, hard negatives) come from
`retrieval.sampling.BatchPlanner`, the loss is `retrieval.losses.skylink_loss`, one epoch is
`train_one_epoch`; `_train` wires data, model, optimizer, checkpoints and validation.

`train(data_root, out, cfg, renders=..., grem=...)` writes a checkpoint each epoch into
`out/checkpoints/` (model, optimizer, scheduler, RNG state, resolved config; atomically), TensorBoard
scalars into `out/tb/`, per-epoch numbers into `out/history.json` and the final `out/model.pt`.
A re-run resumes from the last checkpoint of the same run (config and data unchanged), also after a
kill. Works under `torchrun --nproc_per_node N` (DDP; gloo on CPU, NCCL on CUDA).

    python -m retrieval.train --data TREE --out OUT [--renders DIR] [--grem DIR] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from .augment import AugmentParams
from .backbone import resolve_device
from .config import TrainConfig, key_dict
from .geometry_targets import NAMES as GEOMETRY_NAMES
from .geometry_targets import geometry_targets
from .losses import LossWeights, geometry_loss, skylink_loss
from .model import SkyLinkModel, config_from_dict
from .sampling import (
    BatchPlanner,
    Neighbours,
    batch_stats,
    embed_for_similarity,
    read_positions,
    similarity_neighbours,
)
from .train_data import (
    FEATURES_DIR,
    Building,
    ImageCache,
    TrainBatches,
    cache_render_features,
    collect_buildings,
    eval_images,
    limit_buildings,
    render_views,
    split_validation,
)

logger = logging.getLogger("skylink")

CKPT_DIR = "checkpoints"
FINAL = "model.pt"
HISTORY = "history.json"


class NonFiniteLossError(FloatingPointError):
    pass


# ---------------------------------------------------------------- distributed helpers

@dataclasses.dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _setup_dist(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# ---------------------------------------------------------------- config, seeds, checkpoints

def resolve_config(cfg: TrainConfig, renders: Path | None, grem: Path | None) -> TrainConfig:
    """The config actually trained: parts whose inputs are absent are switched off (and say so)."""
    cfg = dataclasses.replace(cfg)
    if cfg.use_3d and renders is None:
        logger.warning("train.use_3d is on but no renders were given: training without the 3D bridge")
        cfg.use_3d = False
    if cfg.use_grem and grem is None:
        logger.warning("train.use_grem is on but no GREM lists were given: training without GREM extras")
        cfg.use_grem = False
    if cfg.head not in ("pafa", "gem"):
        raise ValueError(f"train.head must be 'pafa' or 'gem', got {cfg.head!r}")
    if cfg.render_satellite_source not in ("renders", "drone", "drone+renders"):
        raise ValueError(f"train.render_satellite_source must be 'renders', 'drone' or 'drone+renders', "
                         f"got {cfg.render_satellite_source!r}")
    if cfg.batch_size < 2:
        raise ValueError(f"train.batch_size must be >= 2 for contrastive training, got {cfg.batch_size}")
    return cfg


def second_drone_weight(cfg: TrainConfig) -> float:
    """Weight of the second-drone-image slot: "drone+renders" adds it beside the renders, with their weight
    (does a 3D render add anything to two real drone images of the building?)."""
    return cfg.w_render_satellite if cfg.render_satellite_source == "drone+renders" else 0.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _atomic_json(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def _epoch_checkpoints(out: Path) -> list[Path]:
    return sorted((out / CKPT_DIR).glob("epoch_*.pt"))


def _run_key(cfg: TrainConfig, data_root: Path, buildings: dict[str, Building], features: dict[str, Path],
             world: int) -> str:
    # Image paths relative to the data root: a work dir moved or copied elsewhere still resumes.
    data = {"config": key_dict(cfg), "world": world,
            "buildings": {b: [os.path.relpath(p, data_root) for p in [x.satellite, *x.street_pool]]
                          for b, x in sorted(buildings.items())},
            "features": sorted(features)}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _unwrap(model: torch.nn.Module) -> SkyLinkModel:
    return model.module if hasattr(model, "module") else model


def _param_groups(model: SkyLinkModel, cfg: TrainConfig) -> list[dict]:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_backbone = name.startswith("backbone.")
        no_decay = p.ndim <= 1   # biases, norms, GeM p, the temperature
        groups.setdefault((is_backbone, no_decay), []).append(p)
    return [{"params": ps, "lr": cfg.lr * (cfg.backbone_lr_scale if bb else 1.0),
             "weight_decay": 0.0 if nd else cfg.weight_decay} for (bb, nd), ps in sorted(groups.items())]


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return f


# ---------------------------------------------------------------- validation

@torch.no_grad()
def validation_recall(model: SkyLinkModel, buildings: dict[str, Building], val_ids: list[str],
                      image_size: int, device: torch.device, cache: ImageCache | None = None) -> float | None:
    """R@1 of the held-out buildings' street images against the satellite tiles of all train buildings."""
    if not val_ids:
        return None
    model.eval()
    ids = sorted(buildings)
    sat_size = model.branch_image_size("satellite", image_size)
    gallery = torch.cat([model.embed(eval_images([buildings[b].satellite for b in ids[i:i + 32]], sat_size, cache)
                                     .to(device), "satellite") for i in range(0, len(ids), 32)])
    q_paths = [(b, p) for b in val_ids for p in buildings[b].street]
    queries = torch.cat([model.embed(eval_images([p for _, p in q_paths[i:i + 32]], image_size, cache).to(device), "street")
                         for i in range(0, len(q_paths), 32)])
    best = (queries.float() @ gallery.float().t()).argmax(1).cpu().numpy()
    truth = np.array([ids.index(b) for b, _ in q_paths])
    model.train()
    return float((best == truth).mean())


# ---------------------------------------------------------------- training

def train(data_root: Path, out: Path, cfg: TrainConfig, *, renders: Path | None = None, grem: Path | None = None,
          resume: bool = True, max_epochs_this_run: int | None = None, progress: bool = True) -> Path:
    """Train and return the final checkpoint path (`out/model.pt`).

    `max_epochs_this_run` stops after that many epochs of this call (time-boxed runs; the next call
    resumes) and then returns the last epoch checkpoint instead.
    """
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(Path(data_root), Path(out), cfg, renders=renders, grem=grem, resume=resume,
                      max_epochs_this_run=max_epochs_this_run, progress=progress)
    finally:
        torch.set_num_threads(threads)


def _render_features(cfg: TrainConfig, renders: Path | None, train_ids: list[str], out: Path, dd: Dist,
                     device: torch.device) -> dict[str, Path]:
    """Building id -> cached frozen-encoder features of its renders (rank 0 writes, the others read);
    switches the 3D bridge off when no train building has renders."""
    if not cfg.use_3d:
        return {}
    feat_dir = out / FEATURES_DIR
    features: dict[str, Path] = {}
    if dd.main:
        features = cache_render_features(Path(renders), train_ids, feat_dir, scales=tuple(cfg.scales),
                                         modalities=tuple(cfg.render_modalities),
                                         image_size=cfg.render_image_size, encoder_name=cfg.render_encoder,
                                         height_range=cfg.render_height_range, device=str(device))
    dd.barrier()
    if not dd.main:
        features = {b: feat_dir / f"{b}.npy" for b in train_ids if (feat_dir / f"{b}.npy").is_file()}
    if not features:
        logger.warning("%s: no rendered views for any train building: training without the 3D bridge", renders)
        cfg.use_3d = False
    else:
        cfg.render_feature_dim = int(np.load(next(iter(features.values())), mmap_mode="r").shape[-1])
        logger.info("3D bridge: cached render features for %d/%d train buildings", len(features), len(train_ids))
    return features


def _planner(cfg: TrainConfig, data_root: Path, train_ids: list[str], flown: set[str]) -> BatchPlanner:
    """The batch sampler of this run; positions for neighbour sampling come from an optional file of the
    dataset (never from the synthetic world's ground truth)."""
    positions = None
    if cfg.neighbour_sampling and cfg.positions_file:
        path = Path(cfg.positions_file)
        path = path if path.is_absolute() else data_root / path
        if path.is_file():
            positions = read_positions(path)
            logger.info("hard negatives: positions of %d buildings from %s", len(positions), path)
        else:
            logger.info("hard negatives: no %s: neighbour sampling skipped", path)
    return BatchPlanner(train_ids, cfg.batch_size, cfg.samples_per_building, cfg.seed, flown=flown,
                        flown_per_batch=cfg.flown_per_batch, positions=positions,
                        similarity=cfg.similarity_sampling, similarity_start_epoch=cfg.similarity_start_epoch,
                        group=cfg.hard_negative_group, pool=cfg.hard_negative_pool)


@torch.no_grad()
def _similarity_neighbours(model: SkyLinkModel, buildings: dict[str, Building], ids: list[str], cfg: TrainConfig,
                           device: torch.device, cache: ImageCache, dd: Dist) -> Neighbours:
    """Dynamic similarity sampling: each building's most confusable others under the current model
    (rank 0 computes, every rank gets the same lists so that they cut the same batches)."""
    nb: list = [None]
    if dd.main:
        model.eval()

        def embed(paths: list[Path], branch: str) -> torch.Tensor:
            size = model.branch_image_size(branch, cfg.image_size)
            return model.embed(eval_images(paths, size, cache).to(device), branch)

        street, sat = embed_for_similarity(embed, [buildings[b].street[0] for b in ids],
                                           [buildings[b].satellite for b in ids])
        nb[0] = similarity_neighbours(ids, street, sat, cfg.hard_negative_pool)
        model.train()
    if dd.world > 1:
        dist.broadcast_object_list(nb, src=0)
    return nb[0]


@dataclasses.dataclass
class StepTools:
    """What each training step needs besides the model, the batch and the optimizer."""
    weights: LossWeights
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: torch.device
    use_amp: bool
    amp_dtype: torch.dtype
    grad_clip: float
    dd: Dist
    writer: Any = None
    geometry_weight: float = 0.0


def train_one_epoch(model: torch.nn.Module, loader: Any, optimizer: torch.optim.Optimizer, tools: StepTools, *,
                    epoch: int, epochs: int, global_step: int, last_ckpt: Path | None,
                    progress: bool = True) -> tuple[dict[str, float], int]:
    """One pass over the epoch's batches: forward street, satellite (and their second views) and the 3D
    features, skylink_loss, step. Returns the mean loss parts, images/s and the new global step."""
    base = _unwrap(model)
    sums: dict[str, float] = {}
    n_images, n_steps, t0 = 0, 0, time.time()
    bar = tqdm(loader, desc=f"train {epoch + 1}/{epochs}", disable=not (progress and tools.dd.main), unit="step",
               leave=False)
    for step, batch in enumerate(bar):
        two_views = "street2" in batch
        views = ["street", "satellite"] + (["street2", "satellite2"] if two_views else []) + (
            ["drone"] if "drone" in batch else []) + [v for v in ("render", "drone2") if v in batch]
        # uint8 pixels go to the device as they are: the backbone normalises them (its own mean/std)
        images = [batch[v].to(tools.device, non_blocking=True) for v in views]
        feats = mask = None
        if "feats3d" in batch:
            feats = batch["feats3d"].to(tools.device)
            mask = batch["mask3d"].to(tools.device)
            if two_views:
                feats = torch.cat([feats, feats])
                mask = torch.cat([mask, batch["mask3d_2"].to(tools.device)])
        autocast = torch.autocast("cuda", dtype=tools.amp_dtype) if tools.use_amp else nullcontext()
        with autocast:
            emb2d, emb3d, scale = model(images, feats, mask)
        emb = {v: e for v, e in zip(views, emb2d.float().split([x.shape[0] for x in images]))}
        n = len(batch["ids"])
        has_3d = None
        if emb3d is not None:
            parts3d = emb3d.float().split(n)
            emb["threed"] = parts3d[0]
            if two_views:
                emb["threed2"] = parts3d[1]
            has_3d = batch["has_3d"].to(tools.device)
        drone_rows, render_rows, drone2_rows = (batch[f"{v}_rows"].to(tools.device) if f"{v}_rows" in batch
                                                else None for v in ("drone", "render", "drone2"))
        loss, parts = skylink_loss(emb, scale.float(), tools.weights, has_3d, drone_rows, render_rows, drone2_rows)
        if "geometry" in batch and base.geometry_head is not None:
            target = batch["geometry"].to(tools.device)
            rows = batch["has_geometry"].to(tools.device)
            geo = 0.5 * sum(geometry_loss(base.geometry_head(emb[v]), target, rows) for v in ("street", "satellite"))
            parts["geometry"] = float(geo.detach())
            loss = loss + tools.geometry_weight * geo
        finite = torch.isfinite(loss.detach()).float()
        if tools.dd.world > 1:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            raise NonFiniteLossError(
                f"non-finite loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1} (global step "
                f"{global_step + 1}); training stopped, last good checkpoint: {last_ckpt or 'none (no epoch finished)'}")
        optimizer.zero_grad(set_to_none=True)
        tools.scaler.scale(loss).backward()
        if tools.grad_clip > 0:
            tools.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for p in base.parameters() if p.requires_grad], tools.grad_clip)
        tools.scaler.step(optimizer)
        tools.scaler.update()
        tools.scheduler.step()
        global_step += 1
        n_steps += 1
        n_images += sum(x.shape[0] for x in images)
        parts["total"] = float(loss.detach())
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        temperature = 1.0 / float(scale.detach())
        if tools.writer is not None:
            for k, v in parts.items():
                tools.writer.add_scalar(f"loss/{k}", v, global_step)
            tools.writer.add_scalar("temperature", temperature, global_step)
            # the heads' lr; the backbone's is x backbone_lr_scale
            tools.writer.add_scalar("lr", max(tools.scheduler.get_last_lr()), global_step)
        bar.set_postfix(loss=f"{parts['total']:.3f}", T=f"{temperature:.3f}")
    bar.close()
    # Throughput over the whole loop: loading and augmenting the images is part of the cost on CPU.
    seconds = time.time() - t0
    record = {"steps": n_steps, **{f"loss_{k}": v / max(1, n_steps) for k, v in sums.items()},
              "images_per_s": n_images * tools.dd.world / max(seconds, 1e-9), "seconds": seconds}
    return record, global_step


def _resume(out: Path, run_key: str, model: SkyLinkModel, optimizer: torch.optim.Optimizer, scheduler: Any,
            scaler: torch.amp.GradScaler) -> tuple[int, list[dict], Path | None]:
    """(start epoch, history, last checkpoint) from the newest epoch checkpoint of the same run."""
    ckpts = _epoch_checkpoints(out)
    if not ckpts:
        return 0, [], None
    state = torch.load(ckpts[-1], map_location="cpu", weights_only=False)
    if state.get("run_key") != run_key:
        logger.warning("%s: checkpoints belong to another config or dataset; starting afresh", out / CKPT_DIR)
        return 0, [], None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    _set_rng_state(state["rng"])
    logger.info("resuming from %s (epoch %d)", ckpts[-1], int(state["epoch"]))
    return int(state["epoch"]), list(state["history"]), ckpts[-1]


def _save_epoch(out: Path, epoch: int, keep: int, history: list[dict], state: dict) -> Path:
    """Write epoch_NNN.pt (atomically) and history.json; drop checkpoints beyond the newest `keep`."""
    path = out / CKPT_DIR / f"epoch_{epoch:03d}.pt"
    _atomic_save({**state, "epoch": epoch, "history": history}, path)
    for old in _epoch_checkpoints(out)[: -max(1, keep)]:
        old.unlink(missing_ok=True)
    _atomic_json(history, out / HISTORY)
    return path


def _train(data_root: Path, out: Path, cfg: TrainConfig, *, renders: Path | None, grem: Path | None,
           resume: bool, max_epochs_this_run: int | None, progress: bool) -> Path:
    device = resolve_device(cfg.device)
    dd = _setup_dist(device)
    if device.type == "cuda" and dd.world > 1:
        device = torch.device("cuda", dd.local_rank)
        torch.cuda.set_device(device)
    cfg = resolve_config(cfg, renders, grem)
    out.mkdir(parents=True, exist_ok=True)
    (out / CKPT_DIR).mkdir(exist_ok=True)

    buildings = collect_buildings(data_root, grem if cfg.use_grem else None)
    kept = limit_buildings(buildings, cfg.max_buildings)
    if len(kept) < len(buildings):
        logger.info("training on %d of %d train buildings (train.max_buildings)", len(kept), len(buildings))
    buildings = kept
    train_ids, val_ids = split_validation(sorted(buildings), cfg.val_share, cfg.val_min_train, cfg.seed)
    if len(train_ids) < 2:
        raise ValueError(f"{data_root}: only {len(train_ids)} train building(s) after the validation split")
    features = _render_features(cfg, renders, train_ids, out, dd, device)
    geometry = None
    if cfg.w_geometry > 0 and features:
        geometry = geometry_targets(Path(renders), sorted(features), cfg.scales[0])
        logger.info("geometric targets (%s) for %d train buildings", ", ".join(GEOMETRY_NAMES), len(geometry))
    render_images = None
    render_slot = cfg.w_render_satellite > 0 or cfg.w_render_street > 0
    if render_slot and cfg.render_satellite_source == "drone":
        # real drone images in place of renders (they need no 3D cache, so "without the 3D bridge" keeps them)
        render_images = {b: list(buildings[b].drone) for b in train_ids if len(buildings[b].drone) >= 2}
        logger.info("render slot: a second real drone image of %d train buildings", len(render_images))
    elif render_slot and features:   # "renders", or "drone+renders": renders here, a drone image beside
        render_images = {b: views for b in sorted(features)
                         if (views := [v["color"] for scale in render_views(Path(renders) / b, tuple(cfg.scales))
                                       for v in scale if "color" in v])}
        logger.info("renders through the encoder: colour views of %d train buildings", len(render_images))
    flown = set(features) if cfg.use_3d else set()
    if cfg.w_drone_satellite > 0:   # drone-satellite pairs need flown buildings gathered in batches too
        flown |= {b for b in train_ids if buildings[b].drone}
    flown |= set(render_images or ())   # as do the render slot's pairs
    planner = _planner(cfg, data_root, train_ids, flown)

    run_key = _run_key(cfg, data_root, buildings, features, dd.world)
    resolved = dataclasses.asdict(cfg)
    seed_everything(cfg.seed)
    model = SkyLinkModel(cfg).to(device)
    base = model
    if dd.world > 1:
        # Every trained parameter is used in each forward (the 3D adapter runs on every batch, masked rows
        # included, and the temperature is returned by forward), so no unused-parameter search is needed.
        model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    steps_per_epoch = planner.n_batches() // dd.world
    if steps_per_epoch < 1:
        raise ValueError(f"{len(train_ids)} train buildings give no batch for each of {dd.world} processes")
    total_steps = steps_per_epoch * cfg.epochs
    optimizer = torch.optim.AdamW(_param_groups(base, cfg), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(total_steps, int(round(cfg.warmup_epochs * steps_per_epoch))))
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, history, last_ckpt = (_resume(out, run_key, base, optimizer, scheduler, scaler) if resume
                                       else (0, [], None))
    if start_epoch == 0 and dd.main:
        dd_barrier_safe_cleanup(out)
    dd.barrier()
    final = out / FINAL
    if start_epoch >= cfg.epochs and final.is_file():
        return final

    writer = None
    if dd.main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch * steps_per_epoch)
    weights = LossWeights(cfg.w_street_satellite, cfg.w_street_3d, cfg.w_3d_satellite, cfg.ssl_weight,
                          cfg.label_smoothing, cfg.ssl_3d_weight, cfg.w_drone_satellite, cfg.w_render_satellite,
                          cfg.w_render_street, second_drone_weight(cfg))
    tools = StepTools(weights, scheduler, scaler, device, use_amp, amp_dtype, cfg.grad_clip, dd, writer,
                      cfg.w_geometry)
    aug = AugmentParams(cfg.image_size, tuple(cfg.street_crop_scale), color_jitter=cfg.color_jitter,
                        blur_prob=cfg.blur_prob, satellite_rot90=cfg.satellite_rot90,
                        satellite_size=cfg.satellite_image_size or cfg.image_size)
    # Images are decoded once at a working size a little above the training size, so crops keep detail.
    cache = ImageCache(int(round(max(cfg.image_size, cfg.satellite_image_size) * 1.15)), cfg.cache_images)
    end_epoch = cfg.epochs if max_epochs_this_run is None else min(cfg.epochs, start_epoch + max_epochs_this_run)
    global_step = start_epoch * steps_per_epoch
    model.train()
    for epoch in range(start_epoch, end_epoch):
        sim_nb = (_similarity_neighbours(base, buildings, train_ids, cfg, device, cache, dd)
                  if planner.wants_similarity(epoch) else None)
        batches = planner.plan(epoch, sim_nb)
        stats = batch_stats(batches, planner.flown)
        batches = batches[: steps_per_epoch * dd.world][dd.rank::dd.world]
        data = TrainBatches(buildings, batches, epoch=epoch, seed=cfg.seed + 1000 * dd.rank,
                            samples_per_building=cfg.samples_per_building, aug=aug, two_views=cfg.ssl_weight > 0,
                            features=features if cfg.use_3d else None, n_scales=len(cfg.scales),
                            n_modalities=len(cfg.render_modalities), feature_dim=cfg.render_feature_dim,
                            view_dropout=cfg.view_dropout, image_cache=cache,
                            drone_pairs=cfg.w_drone_satellite > 0, geometry=geometry,
                            render_images=render_images, second_drone=second_drone_weight(cfg) > 0)
        loader = torch.utils.data.DataLoader(data, batch_size=None, shuffle=False, num_workers=cfg.num_workers)
        try:
            record, global_step = train_one_epoch(model, loader, optimizer, tools, epoch=epoch, epochs=cfg.epochs,
                                                  global_step=global_step, last_ckpt=last_ckpt, progress=progress)
        except NonFiniteLossError:
            if writer is not None:
                writer.close()
            raise
        record = {"epoch": epoch + 1, **record, "temperature": 1.0 / float(base.temperature_scale().detach()),
                  "hard_negatives": "similarity" if sim_nb else ("positions" if planner.position_nb else "none"),
                  **stats,
                  # CPU results are reproducible for a fixed seed *and* thread count (reduction order)
                  "threads": torch.get_num_threads()}
        if dd.main:
            r1 = validation_recall(base, buildings, val_ids, cfg.image_size, device, cache)
            if r1 is not None:
                record["val_r1"] = r1
                writer.add_scalar("val/R@1", r1, global_step)
            writer.add_scalar("throughput/images_per_s", record["images_per_s"], global_step)
            writer.flush()
        history.append(record)
        if dd.main:
            logger.info("epoch %d/%d: loss %.4f, T %.4f, %.1f images/s%s", epoch + 1, cfg.epochs,
                        record["loss_total"], record["temperature"], record["images_per_s"],
                        f", val R@1 {record['val_r1']:.3f}" if "val_r1" in record else "")
            last_ckpt = _save_epoch(out, epoch + 1, cfg.keep_checkpoints, history, {
                "model": base.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": _rng_state(), "config": resolved, "run_key": run_key,
                "meta": _meta(train_ids, val_ids, dd.world, device)})
        dd.barrier()
    if writer is not None:
        writer.close()
    if end_epoch < cfg.epochs:
        return out / CKPT_DIR / f"epoch_{end_epoch:03d}.pt"
    if dd.main:
        _atomic_save({"model": base.state_dict(), "config": resolved, "epoch": cfg.epochs, "history": history,
                      "run_key": run_key, "meta": _meta(train_ids, val_ids, dd.world, device)}, final)
    dd.barrier()
    return final


def dd_barrier_safe_cleanup(out: Path) -> None:
    """A fresh run removes the checkpoints and final model of an older run in the same folder."""
    for p in _epoch_checkpoints(out):
        p.unlink(missing_ok=True)
    (out / FINAL).unlink(missing_ok=True)
    (out / HISTORY).unlink(missing_ok=True)


def _meta(train_ids: list[str], val_ids: list[str], world: int, device: torch.device) -> dict:
    return {"train_buildings": train_ids, "val_buildings": val_ids, "world_size": world, "device": str(device),
            "torch": torch.__version__}


# ---------------------------------------------------------------- CLI (also the torchrun entry point)

def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def config_with_overrides(config_file: Path | None, overrides: list[str]) -> TrainConfig:
    """TrainConfig from a YAML file (its `train:` section, or the whole file) and `key=value` overrides."""
    values: dict[str, Any] = {}
    if config_file is not None:
        import yaml

        raw = yaml.safe_load(Path(config_file).read_text()) or {}
        values.update(raw.get("train", raw) if isinstance(raw, dict) else {})
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set {item!r}: expected key=value")
        values[key.removeprefix("train.")] = _parse_value(value)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown train config key(s): {', '.join(unknown)}")
    return config_from_dict(values)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="University-1652-layout dataset root")
    p.add_argument("--out", type=Path, required=True, help="output folder (checkpoints, tb, model.pt)")
    p.add_argument("--renders", type=Path, default=None, help="render stage output (per building scale{k}/view*)")
    p.add_argument("--grem", type=Path, default=None, help="enhance stage output (per building grem.json)")
    p.add_argument("--config", type=Path, default=None, help="YAML file with a train: section")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if checkpoints exist")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = config_with_overrides(args.config, args.overrides)
    path = train(args.data, args.out, cfg, renders=args.renders, grem=args.grem, resume=not args.no_resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(path)
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
