"""Ground truth of one building's drone images from a dataset's `meta/` folder (and, for experiments,
the exact priors and intrinsics it implies).

The `reconstruct` stage reads only `drone_ground_truth`, and only to measure (quality.json): what it
reconstructs from is what the images themselves carry (EXIF GPS and focal length, or nothing).

The format is the synthetic world's (docs/CONTRACTS.md): `meta/cameras/<id>.json` maps image paths
relative to the dataset root to cameras (K, cam_from_world), `meta/buildings.json` holds footprints,
heights and orbit radii, `meta/scene.ply` the mesh. A real dataset without `meta/` gets none of them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class BuildingMeta:
    """Per drone image file name: camera centre (metres) and K; plus ground truth for quality.json."""

    priors: dict[str, np.ndarray]
    intrinsics: dict[str, np.ndarray]
    ground_truth: dict | None


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def building_size(rec: dict) -> float:
    """Largest side of the building's box: footprint extent in x and y, and its height."""
    fp = np.asarray(rec["footprint"], dtype=np.float64)
    return float(max(*np.ptp(fp, axis=0), float(rec["height"])))


def drone_meta(root: Path, building_id: str, drone_dir: Path) -> BuildingMeta:
    """Priors, intrinsics and ground truth of the images in `drone_dir` (a folder under `root`)."""
    root = Path(root).resolve()
    cams = _read_json(root / "meta" / "cameras" / f"{building_id}.json") or {}
    try:
        rel_dir = Path(drone_dir).resolve().relative_to(root)
    except ValueError:
        rel_dir = None
    priors, intrinsics, gt_cams = {}, {}, {}
    for rel, cam in cams.items():
        rel = Path(rel)
        if cam.get("view") != "drone" or cam.get("model") != "PINHOLE" or (rel_dir is not None and rel.parent != rel_dir):
            continue
        P = np.asarray(cam["cam_from_world"], dtype=np.float64).reshape(3, 4)
        priors[rel.name] = -P[:, :3].T @ P[:, 3]
        intrinsics[rel.name] = np.asarray(cam["K"], dtype=np.float64).reshape(3, 3)
        gt_cams[rel.name] = {"cam_from_world": P}
    ground_truth = None
    if gt_cams:
        rec = (_read_json(root / "meta" / "buildings.json") or {}).get(building_id, {})
        mesh = root / "meta" / "scene.ply"
        ground_truth = {
            "cameras": gt_cams,
            "mesh": str(mesh) if mesh.is_file() else None,
            "orbit_radius": rec.get("orbit_radius"),
            "building_size": building_size(rec) if "footprint" in rec and "height" in rec else None,
            "building_index": rec.get("index"),  # the building's `object` id in scene.ply (quality only)
        }
    return BuildingMeta(priors, intrinsics, ground_truth)


def drone_ground_truth(root: Path, building_id: str, drone_dir: Path) -> dict | None:
    """Ground truth of the images in `drone_dir` for quality.json, or None without `meta/`: for measuring only."""
    return drone_meta(root, building_id, drone_dir).ground_truth
