"""Training: unique-id batches, determinism, resume after an interruption, non-finite loss, DDP, and a
short real training that lowers the loss. Data: a micro University-1652 tree with renders (64 px)."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import retrieval.train as train_mod
from retrieval.augment import AugmentParams
from retrieval.config import TrainConfig
from retrieval.model import SkyLinkModel, load_checkpoint
from retrieval.sampling import plan_batches
from retrieval.train import NonFiniteLossError, train
from retrieval.train_data import (Building, ImageCache, TrainBatches, collect_buildings, limit_buildings, render_views,
                                  split_validation)

REPO = Path(__file__).resolve().parents[2]


def make_tree(root: Path, renders: Path, n: int = 6, seed: int = 0, size: int = 64, drones: int = 1) -> None:
    """Buildings whose satellite tile, street views and renders share a colour and a footprint shape."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        bid = f"{i + 1:04d}"
        color = rng.integers(30, 225, 3).tolist()
        w, h = (int(v) for v in rng.integers(12, 40, 2))
        sat = np.full((size, size, 3), 90, np.uint8)
        cv2.rectangle(sat, (size // 2 - w // 2, size // 2 - h // 2), (size // 2 + w // 2, size // 2 + h // 2), color, -1)
        for view, count in (("satellite", 1), ("street", 2), ("google", 2), ("drone", drones)):
            d = root / "train" / view / bid
            d.mkdir(parents=True, exist_ok=True)
            for j in range(count):
                if view in ("satellite", "drone"):
                    img, name = sat, (f"{bid}.jpg" if view == "satellite" else f"image-{j + 1:02d}.jpeg")
                else:
                    img = np.full((size, size + 16, 3), 160, np.uint8)
                    cv2.rectangle(img, (4 + 3 * j, 12), (4 + w * 2, size - 4), color, -1)
                    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
                    name = f"{j}.jpg"
                cv2.imwrite(str(d / name), img)
        for s in (1, 2, 3):
            sd = renders / bid / f"scale{s}"
            sd.mkdir(parents=True, exist_ok=True)
            for v in range(2):
                cv2.imwrite(str(sd / f"view{v:02d}_color.png"), np.roll(sat, 4 * v * s, axis=1))
                np.save(sd / f"view{v:02d}_depth.npy", rng.uniform(1, 5, (16, 16)).astype(np.float32))
                np.save(sd / f"view{v:02d}_height.npy", np.full((16, 16), float(h), np.float32))
            dsm = np.zeros((16, 16), np.float32)
            dsm[4:12, 8 - w // 8: 8 + w // 8 + 1] = h
            np.save(sd / "dsm.npy", dsm.astype(np.float16))
            (sd / "cameras.json").write_text(json.dumps({"dsm": {"gsd": 0.1}}))
    # building 0006 has no renders of scale 3: a partial 3D sample
    for f in (renders / f"{n:04d}" / "scale3").iterdir():
        f.unlink()


@pytest.fixture(scope="module")
def micro(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("micro")
    make_tree(base / "tree", base / "renders")
    return base / "tree", base / "renders"


def tiny_cfg(**kw) -> TrainConfig:
    base = dict(seed=3, epochs=2, batch_size=4, samples_per_building=1, image_size=64, render_image_size=32,
                device="cpu", freeze_stages=5, pafa_proj_channels=32, pafa_depth=1, pafa_out_channels=16,
                pafa_out_rows=2, adapter_hidden=16, val_share=0.0, lr=1e-3, warmup_epochs=0.5, cache_images=64,
                threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_plan_batches_unique_ids():
    ids = [f"{i:04d}" for i in range(11)]
    batches = plan_batches(ids, batch_size=4, rounds=3, seed=0, epoch=2)
    assert all(len({b for b, _ in batch}) == len(batch) for batch in batches)   # one sample per building
    assert min(len(b) for b in batches) >= 2 and max(len(b) for b in batches) <= 4
    counts = {i: sum(b == i for batch in batches for b, _ in batch) for i in ids}
    assert set(counts.values()) == {3}
    assert plan_batches(ids, 4, 3, 0, 2) == batches and plan_batches(ids, 4, 3, 0, 3) != batches
    assert split_validation(ids, 0.2, 4, 0)[1] and not split_validation(ids[:4], 0.2, 4, 0)[1]


def test_collect_buildings_with_grem_extras(micro, tmp_path):
    tree, renders = micro
    grem = tmp_path / "enhance"
    (grem / "0002").mkdir(parents=True)
    (grem / "0002" / "grem.json").write_text(json.dumps({"kept": ["train/google/0002/1.jpg"]}))
    b = collect_buildings(tree, grem)
    assert len(b) == 6 and b["0002"].extra == [tree / "train/google/0002/1.jpg"] and not b["0001"].extra
    assert len(b["0002"].street_pool) == 3
    (grem / "0003").mkdir()
    (grem / "0003" / "grem.json").write_text(json.dumps({"kept": ["train/google/0003/9.jpg"]}))
    with pytest.raises(FileNotFoundError, match="9.jpg"):
        collect_buildings(tree, grem)
    views = render_views(renders / "0006", (1, 2, 3))
    assert [len(v) for v in views] == [2, 2, 0] and set(views[0][0]) == {"color", "depth", "height"}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_deterministic_resume_and_nonfinite(micro, tmp_path, monkeypatch):
    tree, renders = micro
    cfg = tiny_cfg(keep_checkpoints=2)
    # uninterrupted run
    final_a = train(tree, tmp_path / "a", cfg, renders=renders, progress=False)
    assert final_a == tmp_path / "a" / "model.pt"
    model, conf = load_checkpoint(final_a, "cpu")
    assert conf["use_3d"] is True and conf["use_grem"] is False   # resolved: no GREM lists given
    assert model.adapter3d is not None
    # interrupted after epoch 1 (as if killed), same seed: bit-identical first epoch. The cached render
    # features are reused (their index matches the render files), which also tests that cache.
    shutil.copytree(tmp_path / "a" / "render_features", tmp_path / "b" / "render_features")
    ck1 = train(tree, tmp_path / "b", cfg, renders=renders, progress=False, max_epochs_this_run=1)
    assert ck1.name == "epoch_001.pt" and not (tmp_path / "b" / "model.pt").exists()
    assert _same(_weights(ck1), _weights(tmp_path / "a" / "checkpoints" / "epoch_001.pt"))
    # a non-finite loss in epoch 2 stops with the step named and keeps the epoch-1 checkpoint
    real = train_mod.skylink_loss

    def nan_loss(*a, **k):
        total, parts = real(*a, **k)
        return total * float("nan"), parts

    monkeypatch.setattr(train_mod, "skylink_loss", nan_loss)
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1 .*epoch_001\.pt"):
        train(tree, tmp_path / "b", cfg, renders=renders, progress=False)
    monkeypatch.setattr(train_mod, "skylink_loss", real)
    assert _same(_weights(ck1), _weights(tmp_path / "a" / "checkpoints" / "epoch_001.pt"))
    # resume: same weights as the uninterrupted run
    final_b = train(tree, tmp_path / "b", cfg, renders=renders, progress=False)
    assert _same(_weights(final_b), _weights(final_a))
    hist_a = json.loads((tmp_path / "a" / "history.json").read_text())
    hist_b = json.loads((tmp_path / "b" / "history.json").read_text())
    assert [h["loss_total"] for h in hist_a] == [h["loss_total"] for h in hist_b]
    # epoch 2 drew its batches from the model's similarity (hard negatives), reproducibly after a resume
    assert [h["hard_negatives"] for h in hist_a] == ["none", "similarity"]
    # a finished run is not retrained; a changed config starts afresh
    assert train(tree, tmp_path / "b", cfg, renders=renders, progress=False) == final_b
    assert (tmp_path / "a" / "tb").is_dir() and any((tmp_path / "a" / "tb").iterdir())


def test_run_key_survives_a_moved_work_dir(micro, tmp_path):
    """The resume key names images relative to the data root: a copied work dir still resumes."""
    tree, _ = micro
    moved = shutil.copytree(tree, tmp_path / "elsewhere" / "tree")
    cfg = tiny_cfg()
    keys = [train_mod._run_key(cfg, root, collect_buildings(root), {}, 1) for root in (tree, moved)]
    assert keys[0] == keys[1]
    assert train_mod._run_key(dataclasses.replace(cfg, seed=cfg.seed + 1), tree, collect_buildings(tree), {}, 1) != keys[0]


def test_short_training_lowers_the_loss(micro, tmp_path):
    tree, renders = micro
    cfg = tiny_cfg(epochs=8, samples_per_building=2, batch_size=6, ssl_weight=3.0, lr=2e-3, warmup_epochs=1)
    train(tree, tmp_path, cfg, renders=renders, progress=False)
    hist = json.loads((tmp_path / "history.json").read_text())
    first, last = hist[0], hist[-1]
    assert last["loss_total"] < 0.85 * first["loss_total"]
    assert last["loss_street_satellite"] < first["loss_street_satellite"]
    assert last["temperature"] != pytest.approx(0.07, abs=1e-4)     # the temperature is learned
    assert all(h["images_per_s"] > 0 and h["threads"] >= 1 for h in hist)


def test_ddp_two_processes_gloo(micro, tmp_path):
    tree, renders = micro
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "retrieval.train", "--data", str(tree), "--out", str(out), "--renders", str(renders)]
    for k, v in dataclasses.asdict(tiny_cfg(epochs=1)).items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(out / "model.pt", map_location="cpu", weights_only=False)
    assert ckpt["meta"]["world_size"] == 2 and ckpt["epoch"] == 1
    load_checkpoint(out / "model.pt", "cpu")


def test_drone_satellite_pairs_train(micro, tmp_path):
    """With w_drone_satellite the flown buildings' drone images join the batch (gathered like 3D ones)
    and their term is logged; without it no drone image is read."""
    tree, renders = micro
    cfg = tiny_cfg(epochs=1, batch_size=6, ssl_weight=0.0, w_drone_satellite=1.0, use_3d=False)
    train(tree, tmp_path / "on", cfg, renders=renders, progress=False)
    hist = json.loads((tmp_path / "on" / "history.json").read_text())
    assert hist[0]["loss_drone_satellite"] > 0
    train(tree, tmp_path / "off", dataclasses.replace(cfg, w_drone_satellite=0.0), renders=renders, progress=False)
    assert "loss_drone_satellite" not in json.loads((tmp_path / "off" / "history.json").read_text())[0]


def test_geometric_targets_train_through_a_shared_layer(micro, tmp_path):
    """With w_geometry the street and satellite descriptors of buildings with a DSM predict its shape
    figures; the term is logged, the layer is saved and the loss falls; without it no layer exists."""
    tree, renders = micro
    cfg = tiny_cfg(epochs=6, batch_size=6, samples_per_building=2, w_geometry=1.0, lr=3e-3)
    train(tree, tmp_path / "geo", cfg, renders=renders, progress=False)
    hist = json.loads((tmp_path / "geo" / "history.json").read_text())
    assert hist[0]["loss_geometry"] > 0
    assert hist[-1]["loss_geometry"] < hist[0]["loss_geometry"]
    model, _ = load_checkpoint(tmp_path / "geo" / "model.pt", "cpu")
    assert model.geometry_head is not None
    assert SkyLinkModel(tiny_cfg()).geometry_head is None


def test_renders_through_the_trainable_encoder(micro, tmp_path):
    """With w_render_satellite a rendered colour view of each building with renders joins the batch
    and is paired with its tile (and with w_render_street with its street photo); the terms are logged
    and the render-satellite one falls."""
    tree, renders = micro
    cfg = tiny_cfg(epochs=4, batch_size=6, samples_per_building=2, w_render_satellite=1.0, w_render_street=0.5,
                   lr=3e-3)
    train(tree, tmp_path, cfg, renders=renders, progress=False)
    hist = json.loads((tmp_path / "history.json").read_text())
    assert hist[0]["loss_render_satellite"] > 0 and hist[0]["loss_render_street"] > 0
    assert hist[-1]["loss_render_satellite"] < hist[0]["loss_render_satellite"]


def test_drone_control_fills_the_render_slot_with_another_drone_image(tmp_path):
    """train.render_satellite_source=drone (the control for the renders): the slot holds a real drone
    image of the same building, never the one its drone pair already shows; it needs no 3D cache, so
    "without the 3D bridge" keeps it."""
    tree, renders = tmp_path / "tree", tmp_path / "renders"
    make_tree(tree, renders, drones=3)
    cfg = tiny_cfg(epochs=3, batch_size=6, samples_per_building=2, w_render_satellite=1.0,
                   render_satellite_source="drone", lr=3e-3)
    train(tree, tmp_path / "run", cfg, renders=None, progress=False)
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist[0]["loss_render_satellite"] > 0

    buildings = collect_buildings(tree)
    fetched: list[Path] = []

    class Recording(ImageCache):
        def get(self, path: Path) -> np.ndarray:
            fetched.append(path)
            return super().get(path)

    ids = sorted(buildings)
    data = TrainBatches(buildings, [[(b, 0) for b in ids]] * 20, epoch=0, seed=0, samples_per_building=1,
                        aug=AugmentParams(image_size=32), two_views=False, features=None, n_scales=3,
                        n_modalities=3, feature_dim=8, view_dropout=0.0, image_cache=Recording(32, 0),
                        drone_pairs=True, render_images={b: list(buildings[b].drone) for b in ids})
    pairs = []
    for i in range(len(data)):
        fetched.clear()
        assert len(data[i]["render_rows"]) == len(ids)
        # per slot: street, satellite, drone pair, render slot
        pairs += [(fetched[k + 2], fetched[k + 3]) for k in range(0, len(fetched), 4)]
    assert all(d != r and d.parent == r.parent for d, r in pairs)
    assert len({r.name for _, r in pairs}) == 3      # every drone image serves the slot
    # "drone+renders": renders in the slot and a second drone image in a term of its own beside them
    both = dataclasses.replace(cfg, render_satellite_source="drone+renders", epochs=1)
    train(tree, tmp_path / "both", both, renders=renders, progress=False)
    parts = json.loads((tmp_path / "both" / "history.json").read_text())[0]
    assert parts["loss_render_satellite"] > 0 and parts["loss_drone2_satellite"] > 0
    with pytest.raises(ValueError, match="render_satellite_source"):
        train(tree, tmp_path / "bad", tiny_cfg(render_satellite_source="google"), renders=renders, progress=False)


def test_max_buildings_keeps_flown_first_and_the_same_places_for_every_seed(micro, tmp_path):
    """train.max_buildings trains on a subset: flown buildings first, then by id, whatever the seed;
    a subset of one building is an error that names the option."""
    sat = Path("s.jpg")
    b = {i: Building(i, sat, [sat], drone=[sat] if i in ("0004", "0006") else []) for i in
         ("0001", "0002", "0003", "0004", "0005", "0006")}
    assert list(limit_buildings(b, 3)) == ["0001", "0004", "0006"]
    assert limit_buildings(b, None) is b and limit_buildings(b, 6) is b
    with pytest.raises(ValueError, match="max_buildings=1"):
        limit_buildings(b, 1)
    tree, renders = micro
    for seed in (0, 1):
        cfg = tiny_cfg(epochs=1, seed=seed, max_buildings=4, use_3d=False)
        train(tree, tmp_path / str(seed), cfg, renders=renders, progress=False)
        meta = torch.load(tmp_path / str(seed) / "model.pt", map_location="cpu", weights_only=False)["meta"]
        assert meta["train_buildings"] == ["0001", "0002", "0003", "0004"]
