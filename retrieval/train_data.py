"""Training data: buildings of a University-1652 tree (+ GREM extra street images), the cached
frozen-encoder features of the 3D renders and the per-batch loader (batches are planned in sampling.py)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from .augment import AugmentParams, augment_satellite, augment_street, view_dropout
from .backbone import frozen_encoder, load_image, to_tensor
from .dataset import by_building, read_tree, select

logger = logging.getLogger("skylink")

FEATURES_DIR = "render_features"


@dataclass
class Building:
    id: str
    satellite: Path
    street: list[Path]                                 # the building's own street images
    extra: list[Path] = field(default_factory=list)    # GREM-kept google images
    drone: list[Path] = field(default_factory=list)    # drone images (flown buildings only)

    @property
    def street_pool(self) -> list[Path]:
        return self.street + self.extra


def collect_buildings(data_root: Path, grem: Path | None = None) -> dict[str, Building]:
    """Train buildings with a satellite tile and at least one street image; GREM lists add extras."""
    data_root = Path(data_root)
    records = select(read_tree(data_root), split="train")
    if not records:
        raise ValueError(f"{data_root}: no train/ images found (University-1652 layout expected)")
    kept: dict[str, list[Path]] = {}
    if grem is not None:
        from .grem import read_kept

        kept = read_kept(Path(grem), data_root)
    out: dict[str, Building] = {}
    for bid, recs in sorted(by_building(records).items()):
        sats = sorted(r.path for r in recs if r.view == "satellite")
        street = sorted(r.path for r in recs if r.view == "street")
        if not sats or not street:
            logger.warning("train building %s skipped: %s", bid, "no satellite tile" if not sats else "no street image")
            continue
        extra = [p for p in kept.get(bid, []) if p not in street]
        for p in extra:
            if not p.is_file():
                raise FileNotFoundError(f"{p}: listed as kept in {grem}/{bid}/grem.json but missing")
        out[bid] = Building(bid, sats[0], street, extra, sorted(r.path for r in recs if r.view == "drone"))
    if len(out) < 2:
        raise ValueError(f"{data_root}: {len(out)} usable train building(s); contrastive training needs at least 2")
    return out


def split_validation(ids: list[str], share: float, min_train: int, seed: int) -> tuple[list[str], list[str]]:
    """(train ids, validation ids): `share` of the buildings held out, none when too few would remain."""
    n_val = int(round(len(ids) * share))
    if n_val < 1 or len(ids) - n_val < min_train:
        return sorted(ids), []
    perm = np.random.default_rng([seed, 7]).permutation(len(ids))
    val = sorted(ids[i] for i in perm[:n_val])
    return sorted(set(ids) - set(val)), val


def limit_buildings(buildings: dict[str, Building], n: int | None) -> dict[str, Building]:
    """The first `n` buildings, flown ones first (they carry the 3D bridge and the drone pairs), then
    the others by id; all of them when `n` is None or not smaller. The choice is the same for every
    train seed, so that runs that differ only in seed train on the same places."""
    if n is None or n >= len(buildings):
        return buildings
    if n < 2:
        raise ValueError(f"train.max_buildings={n}: contrastive training needs at least 2 buildings")
    order = sorted(buildings, key=lambda b: (not buildings[b].drone, b))
    return {b: buildings[b] for b in sorted(order[:n])}


# ---------------------------------------------------------------- 3D render features

def render_views(render_dir: Path, scales: tuple[int, ...]) -> list[list[dict[str, Path]]]:
    """Per scale, the rendered views (modality -> file) of one building, in view order.

    Files follow the render stage's layout: `scale{k}/view{NN}_{modality}.png|.npy` (colour and normals
    as PNG, depth and height as NPY); other files of the folder (dsm, cameras.json) are not views.
    """
    out = []
    for k in scales:
        sdir = render_dir / f"scale{k}"
        views: dict[str, dict[str, Path]] = {}
        if sdir.is_dir():
            for f in sorted(sdir.iterdir()):
                stem, suffix = f.name.split(".")[0], f.suffix.lower()
                if not stem.startswith("view") or "_" not in stem or suffix not in (".png", ".jpg", ".npy"):
                    continue
                view, modality = stem.split("_", 1)
                views.setdefault(view, {})[modality] = f
        out.append([views[v] for v in sorted(views) if "color" in views[v] or "depth" in views[v]])
    return out


def _read_map(path: Path) -> np.ndarray:
    try:
        arr = np.load(path).astype(np.float32)
    except Exception as e:
        raise ValueError(f"{path}: cannot read render map ({e})") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{path}: render map of shape {arr.shape} is not H x W")
    return arr


def _gray(values: np.ndarray, size: int) -> np.ndarray:
    img = cv2.resize(values, (size, size), interpolation=cv2.INTER_NEAREST)
    return np.repeat((np.clip(img, 0, 1) * 255).astype(np.uint8)[..., None], 3, axis=2)


def _view_image(files: dict[str, Path], modality: str, size: int, height_range: float) -> np.ndarray | None:
    """One modality of a rendered view as an RGB uint8 image for the ImageNet encoder.

    Depth and height become grey images (PointCLIP-style, repeated over 3 channels), empty pixels
    (depth 0) black. Depth is min-max normalised per view, near = bright, since camera distances differ
    between scales; height keeps its meaning across buildings (height above ground / `height_range`, in
    the scene's unit), because how tall a building is, is exactly what the 3D bridge can tell the
    street and satellite views.
    """
    f = files.get(modality)
    if f is None:
        return None
    if f.suffix.lower() in (".png", ".jpg"):
        return load_image(f, size)
    arr = _read_map(f)
    depth = _read_map(files["depth"]) if modality != "depth" and "depth" in files else (arr if modality == "depth" else None)
    valid = np.isfinite(arr)
    if depth is not None and depth.shape == arr.shape:
        valid &= depth > 0
    img = np.zeros(arr.shape, np.float32)
    if valid.any():
        if modality == "depth":
            lo, hi = float(arr[valid].min()), float(arr[valid].max())
            img[valid] = 0.15 + 0.85 * (1.0 - (arr[valid] - lo) / max(hi - lo, 1e-6))
        else:
            img[valid] = 0.15 + 0.85 * np.clip(arr[valid] / height_range, 0, 1)
    return _gray(img, size)


def _files_key(views: list[list[dict[str, Path]]]) -> list:
    return [[[str(p.name), p.stat().st_size, p.stat().st_mtime_ns] for vf in scale for p in sorted(vf.values())]
            for scale in views]


def auto_height_range(renders: Path, ids: list[str], scales: tuple[int, ...], percentile: float = 95.0) -> float:
    """A height scale for the height views, in the scene's unit: the `percentile` of the buildings'
    tops (each building's 99th-percentile rendered height over its views), so that height views use
    the grey range across buildings instead of saturating or staying flat. 1.0 when nothing is rendered."""
    tops = []
    for bid in ids:
        heights = [_read_map(f["height"]) for scale in render_views(Path(renders) / bid, scales)
                   for f in scale if "height" in f]
        vals = np.concatenate([h[np.isfinite(h) & (h > 0)] for h in heights]) if heights else np.empty(0)
        if vals.size:
            tops.append(float(np.percentile(vals, 99)))
    return float(np.percentile(tops, percentile)) if tops and max(tops) > 0 else 1.0


def cache_render_features(renders: Path, ids: list[str], out_dir: Path, *, scales: tuple[int, ...],
                          modalities: tuple[str, ...], image_size: int, encoder_name: str = "efficientnet_lite0",
                          height_range: float = 0.0, device: str = "auto", batch_size: int = 32) -> dict[str, Path]:
    """Encode every rendered view once with the frozen encoder; write `<id>.npy` (S x V x M x C float32,
    NaN rows for absent views) into out_dir. Reuses files whose render inputs are unchanged.
    Returns building id -> feature file, for buildings that have at least one rendered view.

    `height_range` <= 0 takes it from the renders themselves (`auto_height_range`): without GPS a
    scene's unit is its drone orbit's radius, not the metre, so no fixed number fits every dataset."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / "index.json"
    index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    all_views = {bid: render_views(Path(renders) / bid, scales) for bid in ids}
    keys = {bid: _files_key(views) for bid, views in all_views.items() if any(views)}
    auto = index.get("auto_height_range")
    if "height" in modalities and height_range <= 0:
        # reading every height map takes seconds on a large world: reuse the figure while no render changed
        renders_key = hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()
        if not auto or auto.get("renders") != renders_key:
            auto = {"renders": renders_key, "value": auto_height_range(Path(renders), ids, scales)}
        height_range = auto["value"]
        logger.info("height views: heights / %.4g (scene units; the 95th percentile of the buildings' tops)",
                    height_range)
    settings = {"encoder": encoder_name, "image_size": image_size, "modalities": list(modalities),
                "scales": list(scales), "height_range": round(float(height_range), 6)}
    if index.get("settings") != settings:
        index = {"settings": settings, "items": {}}
    if auto:
        index["auto_height_range"] = auto
    encoder = None
    result: dict[str, Path] = {}
    for bid in ids:
        views = all_views[bid]
        if not any(views):
            continue
        key = keys[bid]
        target = out_dir / f"{bid}.npy"
        if index["items"].get(bid) == key and target.is_file():
            result[bid] = target
            continue
        if encoder is None:
            encoder = frozen_encoder(device, name=encoder_name)
        n_views = max(len(s) for s in views)
        feats = np.full((len(scales), n_views, len(modalities), encoder.dim), np.nan, np.float32)
        jobs: list[tuple[int, int, int, np.ndarray]] = []
        for si, scale in enumerate(views):
            for vi, files in enumerate(scale):
                for mi, mod in enumerate(modalities):
                    img = _view_image(files, mod, image_size, height_range)
                    if img is not None:
                        jobs.append((si, vi, mi, img))
        for s in range(0, len(jobs), batch_size):
            chunk = jobs[s:s + batch_size]
            emb = encoder(torch.stack([to_tensor(j[3]) for j in chunk])).cpu().numpy()
            for (si, vi, mi, _), e in zip(chunk, emb):
                feats[si, vi, mi] = e
        # A view with some modality missing keeps zeros there rather than NaN (it is still a view).
        present = ~np.isnan(feats).all(axis=(2, 3))
        feats[present] = np.nan_to_num(feats[present], nan=0.0)
        tmp = target.with_suffix(f".tmp{os.getpid()}.npy")
        np.save(tmp, feats)
        os.replace(tmp, target)
        index["items"][bid] = key
        result[bid] = target
    tmp = index_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(index))
    os.replace(tmp, index_path)
    return result


def load_render_features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features S x V x M x C with absent views zeroed, mask S x V)."""
    feats = np.load(path)
    mask = ~np.isnan(feats).all(axis=(2, 3))
    return np.nan_to_num(feats, nan=0.0), mask


# ---------------------------------------------------------------- batches (planned by retrieval/sampling.py)

@dataclass
class TrainSample:
    building: str
    round: int


class TrainBatches(torch.utils.data.Dataset):
    """Item i is a whole (unique-id) batch, augmented with a generator seeded by (seed, epoch, i, slot),
    so the data a step sees does not depend on the worker count or on a resume."""

    def __init__(self, buildings: dict[str, Building], batches: list[list[tuple[str, int]]], *, epoch: int,
                 seed: int, samples_per_building: int, aug: AugmentParams, two_views: bool,
                 features: dict[str, Path] | None, n_scales: int, n_modalities: int, feature_dim: int,
                 view_dropout: float, image_cache: "ImageCache", drone_pairs: bool = False,
                 geometry: dict[str, np.ndarray] | None = None,
                 render_images: dict[str, list[Path]] | None = None, second_drone: bool = False):
        self.buildings, self.batches, self.epoch, self.seed = buildings, batches, epoch, seed
        self.spb, self.aug, self.two_views = samples_per_building, aug, two_views
        self.features = features
        self.n_scales, self.n_modalities, self.feature_dim = n_scales, n_modalities, feature_dim
        self.view_dropout = view_dropout
        self.cache = image_cache
        self.drone_pairs = drone_pairs
        self.geometry = geometry
        self.render_images = render_images or {}
        self.second_drone = second_drone   # a second drone image per flown building, in a slot of its own
        self._feat_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.batches)

    def street_path(self, b: Building, rnd: int) -> Path:
        # Each building cycles through its street pool across epochs in a fixed shuffled order.
        pool = b.street_pool
        order = np.random.default_rng([self.seed, zlib.crc32(b.id.encode()), 3]).permutation(len(pool))
        return pool[order[(self.epoch * self.spb + rnd) % len(pool)]]

    def _features(self, bid: str) -> tuple[np.ndarray, np.ndarray] | None:
        if not self.features or bid not in self.features:
            return None
        if bid not in self._feat_cache:
            self._feat_cache[bid] = load_render_features(self.features[bid])
        return self._feat_cache[bid]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | list[str]]:
        batch = self.batches[i]
        streets, sats, streets2, sats2 = [], [], [], []
        td_feats, td_masks, td_masks2, has_3d = [], [], [], []
        drones, drone_rows, renders, render_rows, drones2, drone2_rows = [], [], [], [], [], []
        max_views = 1
        for slot, (bid, rnd) in enumerate(batch):
            rng = np.random.default_rng([self.seed, self.epoch, i, slot, 5])
            b = self.buildings[bid]
            st = self.cache.get(self.street_path(b, rnd))
            sa = self.cache.get(b.satellite)
            streets.append(augment_street(st, self.aug, rng))
            sats.append(augment_satellite(sa, self.aug, rng))
            if self.two_views:
                streets2.append(augment_street(st, self.aug, rng))
                sats2.append(augment_satellite(sa, self.aug, rng))
            drone = None
            if self.drone_pairs and b.drone:
                # any altitude: the random crop of augment_street keeps the oblique views' framing
                drone = b.drone[int(rng.integers(len(b.drone)))]
                drones.append(augment_street(self.cache.get(drone), self.aug, rng))
                drone_rows.append(slot)
            if bid in self.render_images:
                # never the drone pair's own image (the control fills this slot with drone images)
                views = [v for v in self.render_images[bid] if v != drone] or self.render_images[bid]
                renders.append(augment_street(self.cache.get(views[int(rng.integers(len(views)))]), self.aug, rng))
                render_rows.append(slot)
            if self.second_drone and drone is not None and len(b.drone) >= 2:
                others = [p for p in b.drone if p != drone]
                drones2.append(augment_street(self.cache.get(others[int(rng.integers(len(others)))]), self.aug, rng))
                drone2_rows.append(slot)
            f = self._features(bid)
            if f is not None:
                feats, mask = f
                td_feats.append(feats)
                td_masks.append(view_dropout(mask, self.view_dropout, rng))
                td_masks2.append(view_dropout(mask, self.view_dropout, rng))
                has_3d.append(True)
                max_views = max(max_views, feats.shape[1])
            else:
                td_feats.append(None)
                td_masks.append(None)
                td_masks2.append(None)
                has_3d.append(False)

        def stack(imgs: list[np.ndarray]) -> torch.Tensor:
            return torch.stack([to_tensor(im) for im in imgs])

        out: dict[str, torch.Tensor | list[str]] = {"ids": [bid for bid, _ in batch],
                                                    "street": stack(streets), "satellite": stack(sats)}
        if self.two_views:
            out["street2"], out["satellite2"] = stack(streets2), stack(sats2)
        if len(drones) >= 2:
            out["drone"], out["drone_rows"] = stack(drones), torch.tensor(drone_rows, dtype=torch.long)
        if len(renders) >= 2:
            out["render"], out["render_rows"] = stack(renders), torch.tensor(render_rows, dtype=torch.long)
        if len(drones2) >= 2:
            out["drone2"], out["drone2_rows"] = stack(drones2), torch.tensor(drone2_rows, dtype=torch.long)
        if self.geometry:
            ids = [bid for bid, _ in batch]
            k = len(next(iter(self.geometry.values())))
            out["geometry"] = torch.from_numpy(np.stack([self.geometry.get(b, np.zeros(k, np.float32)) for b in ids]))
            out["has_geometry"] = torch.tensor([b in self.geometry for b in ids])
        if self.features is not None:
            n = len(batch)
            F = np.zeros((n, self.n_scales, max_views, self.n_modalities, self.feature_dim), np.float32)
            M = np.zeros((n, self.n_scales, max_views), bool)
            M2 = np.zeros_like(M)
            for j, (f, m, m2) in enumerate(zip(td_feats, td_masks, td_masks2)):
                if f is not None:
                    F[j, :, : f.shape[1]] = f
                    M[j, :, : m.shape[1]] = m
                    M2[j, :, : m2.shape[1]] = m2
            out["feats3d"], out["mask3d"], out["mask3d_2"] = torch.from_numpy(F), torch.from_numpy(M), torch.from_numpy(M2)
            out["has_3d"] = torch.tensor(has_3d)
        return out


class ImageCache:
    """Decoded training images at a fixed working size, kept in memory up to `capacity` (LRU)."""

    def __init__(self, size: int, capacity: int):
        self.size, self.capacity = size, capacity
        self._data: OrderedDict[Path, np.ndarray] = OrderedDict()

    def get(self, path: Path) -> np.ndarray:
        img = self._data.get(path)
        if img is not None:
            self._data.move_to_end(path)
            return img
        img = load_image(path, self.size)
        if self.capacity > 0:
            self._data[path] = img
            if len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return img


def eval_images(paths: list[Path], size: int, cache: ImageCache | None = None) -> torch.Tensor:
    """Un-augmented uint8 pixel tensors (the backbone normalises them) for validation."""
    imgs = [cv2.resize(cache.get(p), (size, size), interpolation=cv2.INTER_AREA) if cache else load_image(p, size)
            for p in paths]
    return torch.stack([to_tensor(im) for im in imgs])
