"""Generate a synthetic campus into the University-1652 layout with ground truth (`skylink synth`).

    generate_world(cfg, out)                 the whole tree (docs/CONTRACTS.md, "Dataset tree")
    generate_building_drone(cfg, out, i)     only building i's drone images and cameras (for tests)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, fields, replace
from multiprocessing import get_context
from pathlib import Path

import cv2
from tqdm import tqdm

from .camera import ORTHO_HEIGHT
from .config import SynthConfig
from .exif import EXIF_MODES, drone_exif, insert_exif
from .geometry import SceneMesh, build_mesh, write_ply
from .layout import Building, Layout, make_layout, rng_for
from .render import Renderer
from .views import Clearance, GroundShots, Shot, drone_cameras, drone_lights, random_light, satellite_camera

logger = logging.getLogger("skylink")


def check_config(cfg: SynthConfig) -> None:
    problems = []
    if cfg.n_train < 0 or cfg.n_test < 0 or cfg.n_distractors < 0:
        problems.append("building counts must be >= 0")
    if cfg.n_train_drone is not None and not 0 <= cfg.n_train_drone <= cfg.n_train:
        problems.append(f"n_train_drone ({cfg.n_train_drone}) must be within [0, n_train ({cfg.n_train})]")
    if cfg.drone_groups < 1 or cfg.drone_images < cfg.drone_groups or cfg.drone_images % cfg.drone_groups:
        problems.append(f"drone_images ({cfg.drone_images}) must be a positive multiple of drone_groups "
                        f"({cfg.drone_groups})")
    if cfg.drone_images > 99:
        problems.append("drone_images must be at most 99 (names image-01 ... image-99)")
    td = cfg.test_drone_images
    if td is not None and not (cfg.drone_groups <= td <= 99 and td % max(1, cfg.drone_groups) == 0):
        problems.append(f"test_drone_images ({td}) must be a positive multiple of drone_groups ({cfg.drone_groups}), "
                        "at most 99")
    if cfg.test_street_per_building is not None and cfg.test_street_per_building < 0:
        problems.append("test_street_per_building must be >= 0")
    for name in ("drone_size", "satellite_size", "street_size"):
        if getattr(cfg, name) < 16:
            problems.append(f"{name} must be at least 16 pixels")
    if not 0.0 <= cfg.google_wrong_share <= 1.0:
        problems.append("google_wrong_share must be within [0, 1]")
    if cfg.satellite_gsd <= 0:
        problems.append("satellite_gsd must be > 0")
    ona = cfg.satellite_off_nadir_deg
    if isinstance(ona, (list, tuple)) and len(ona) == 2 and not 0.0 <= ona[0] <= ona[1] < 60.0:
        problems.append(f"satellite_off_nadir_deg must be a [low, high] pair within [0, 60) degrees, got {ona!r}")
    if cfg.drone_exif not in EXIF_MODES:
        problems.append(f"drone_exif must be one of {EXIF_MODES}, got {cfg.drone_exif!r}")
    gn = cfg.drone_gps_noise_m
    if not isinstance(gn, (list, tuple)) or len(gn) != 2 or min(gn) < 0:
        problems.append(f"drone_gps_noise_m must be a [horizontal, vertical] pair of sigmas >= 0, got {gn!r}")
    go = cfg.geo_origin
    if not isinstance(go, (list, tuple)) or len(go) != 3 or not (-90 < go[0] < 90 and -180 <= go[1] <= 180):
        problems.append(f"geo_origin must be [latitude, longitude, altitude] in degrees and metres, got {go!r}")
    if not 1 <= cfg.jpeg_quality <= 100:
        problems.append("jpeg_quality must be within [1, 100]")
    for name in ("floors", "drone_elevation_deg", "drone_radius_scale", "street_fov_deg", "street_height_m",
                 "google_fov_deg", "google_height_m", "satellite_off_nadir_deg", "sun_elevation_deg", "sun_azimuth_deg", "ambient", "exposure"):
        v = getattr(cfg, name)
        if not isinstance(v, (list, tuple)) or len(v) != 2:
            problems.append(f"{name} must be a [low, high] pair, got {v!r}")
    if problems:
        raise ValueError("synth config: " + "; ".join(problems))


def build_world(cfg: SynthConfig) -> tuple[Layout, SceneMesh]:
    check_config(cfg)
    layout = make_layout(cfg)
    return layout, build_mesh(layout, cfg.seed)


# ---------------------------------------------------------------------------- planning

def _folders(b: Building, view: str) -> list[str]:
    """Where a building's images of one view go in the University-1652 layout."""
    if b.split == "train":
        return [f"train/{view}/{b.id}"]
    if b.role == "distractor":
        return [f"test/gallery_satellite/{b.id}"] if view == "satellite" else []
    if view == "google":
        return []
    return [f"test/query_{view}/{b.id}", f"test/gallery_{view}/{b.id}"]


def drone_config(cfg: SynthConfig, b: Building) -> SynthConfig:
    """The config building b's flight follows: test buildings fly `test_drone_images` when set."""
    if b.split == "test" and cfg.test_drone_images is not None:
        return replace(cfg, drone_images=cfg.test_drone_images)
    return cfg


def street_count(cfg: SynthConfig, b: Building) -> int:
    """Street views of building b: `test_street_per_building` for test buildings when set."""
    if b.split == "test" and cfg.test_street_per_building is not None:
        return cfg.test_street_per_building
    return cfg.street_per_building


def plan_drone(cfg: SynthConfig, layout: Layout, b: Building, folders: list[str],
               clear: Clearance | None = None) -> list[Shot]:
    """`clear`: the layout's Clearance when the caller has one (its arrays cost as much as a flight)."""
    cfg = drone_config(cfg, b)
    cams = drone_cameras(cfg, b, clear or Clearance(layout))
    lights = drone_lights(cfg, b)
    return [Shot([f"{f}/image-{i + 1:02d}.jpeg" for f in folders], "drone", cam, light, b.id, b.id,
                 drone_exif(cfg, b.index, i, cam))
            for i, (cam, light) in enumerate(zip(cams, lights))]


def flown(cfg: SynthConfig, layout: Layout) -> set[str]:
    """Ids of the buildings with drone images: all but the train buildings left out by `n_train_drone`."""
    train = [b.id for b in layout.buildings if b.split == "train"]
    others = {b.id for b in layout.buildings if b.split != "train" and b.role != "distractor"}
    if cfg.n_train_drone is None or cfg.n_train_drone >= len(train):
        return others | set(train)
    pick = rng_for(cfg.seed, "drone-flown").choice(len(train), size=cfg.n_train_drone, replace=False)
    return others | {train[i] for i in pick.tolist()}


def plan_shots(cfg: SynthConfig, layout: Layout, renderer: Renderer) -> list[Shot]:
    shots: list[Shot] = []
    ground = GroundShots(layout, renderer)
    train = [b for b in layout.buildings if b.split == "train"]
    with_drone = flown(cfg, layout)
    n_google = cfg.google_per_building * len(train)
    grng = rng_for(cfg.seed, "google-wrong")
    wrong = set(grng.choice(n_google, size=int(round(cfg.google_wrong_share * n_google)), replace=False).tolist()) \
        if n_google else set()
    for b in tqdm(layout.buildings, desc="planning views", unit="building", leave=False):
        rng = rng_for(cfg.seed, "sat-light", b.index)
        shots.append(Shot([f"{f}/{b.id}.jpg" for f in _folders(b, "satellite")], "satellite",
                          satellite_camera(cfg, b), random_light(cfg, rng, int(rng.integers(2 ** 31))), b.id, b.id))
        if b.role == "distractor":
            continue
        if b.id in with_drone:
            shots += plan_drone(cfg, layout, b, _folders(b, "drone"), ground.clear)
        for k in range(street_count(cfg, b)):
            rng = rng_for(cfg.seed, "street", b.index, k)
            cam = ground.sample(rng, b, cfg.street_size, cfg.street_fov_deg, cfg.street_height_m,
                                (8.0, 55.0), min_share=0.15)
            shots.append(Shot([f"{f}/street-{k + 1:02d}.jpg" for f in _folders(b, "street")], "street", cam,
                              random_light(cfg, rng, int(rng.integers(2 ** 31))), b.id, b.id))
        if b.split != "train":
            continue
        j = train.index(b)
        for k in range(cfg.google_per_building):
            rng = rng_for(cfg.seed, "google", b.index, k)
            shows, avoid = b, None
            if j * cfg.google_per_building + k in wrong and len(layout.buildings) > 1:
                others = [o for o in layout.buildings if o.index != b.index]
                shows, avoid = others[int(rng.integers(len(others)))], b.index
            cam = ground.sample(rng, shows, cfg.street_size, cfg.google_fov_deg, cfg.google_height_m,
                                (8.0, 110.0), min_share=0.12, avoid=avoid)
            shots.append(Shot([f"{f}/google-{k + 1:02d}.jpg" for f in _folders(b, "google")], "google", cam,
                              random_light(cfg, rng, int(rng.integers(2 ** 31))), b.id, shows.id))
    return shots


# ---------------------------------------------------------------------------- rendering

_WORKER: dict = {}


def _init_worker(mesh: SceneMesh, layout: Layout, seed: int, shadows: bool, threads: int = 0) -> None:
    # one renderer per process; open3d's scene cannot be pickled, its inputs can. Pool workers
    # trace on one thread each: the pool already has a process per core
    _WORKER["renderer"] = Renderer(mesh, layout, seed, shadows, threads)


def _render_batch(shots: list[Shot], root: str, quality: int) -> int:
    renderer: Renderer = _WORKER["renderer"]
    for s in shots:
        frame = renderer.render(s.camera, s.light)
        ok, buf = cv2.imencode(".jpg", frame.rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {s.paths[0]}")
        data = insert_exif(buf.tobytes(), s.exif)
        for p in s.paths:
            (Path(root) / p).write_bytes(data)
    return len(shots)


def render_shots(shots: list[Shot], root: Path, cfg: SynthConfig, mesh: SceneMesh, layout: Layout,
                 workers: int | None = None, desc: str = "rendering") -> None:
    """Render and write every shot; each image's bytes depend only on its own shot."""
    for s in shots:
        for p in s.paths:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
    # a pool costs a few seconds of start-up per worker (imports, scene copy): only worth it for
    # large worlds; bytes are the same either way
    workers = (default_workers() if len(shots) >= 300 else 1) if workers is None else max(1, workers)
    batch = 6
    chunks = [shots[i:i + batch] for i in range(0, len(shots), batch)]
    bar = tqdm(total=len(shots), desc=desc, unit="img", leave=False)
    if workers == 1 or len(chunks) == 1:
        _init_worker(mesh, layout, cfg.seed, cfg.shadows)
        for c in chunks:
            bar.update(_render_batch(c, str(root), cfg.jpeg_quality))
        _WORKER.clear()
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(mesh, layout, cfg.seed, cfg.shadows, 1)) as pool:
            futs = [pool.submit(_render_batch, c, str(root), cfg.jpeg_quality) for c in chunks]
            for f in futs:
                bar.update(f.result())
    bar.close()


def default_workers() -> int:
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(4, n))


# ---------------------------------------------------------------------------- metadata

def _dump(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n")


def _f(x: float) -> float:
    return float(f"{float(x):.6g}")


def building_record(cfg: SynthConfig, b: Building) -> dict:
    ext = [[_f(x), _f(y)] for x, y in list(b.footprint.exterior.coords)[:-1]]
    holes = [[[_f(x), _f(y)] for x, y in list(r.coords)[:-1]] for r in b.footprint.interiors]
    return {"split": b.split, "role": b.role, "index": b.index, "footprint": ext, "holes": holes,
            "height": _f(b.top), "eave_height": _f(b.height), "roof": b.roof,
            "center": [_f(c) for c in b.center], "orbit_radius": _f(b.orbit_radius(cfg)),
            "facade_style": b.facade_style, "roof_colour": [_f(c) for c in b.roof_colour]}


def world_record(cfg: SynthConfig, layout: Layout) -> dict:
    return {"seed": cfg.seed, "config": asdict(cfg), "origin": "local ENU metres, z up",
            "extent": [_f(e) for e in layout.extent],
            "cameras": {"convention": "OpenCV (x right, y down, z forward); cam_from_world = [R|t], "
                                      "X_cam = R X_world + t; pixel centres at (i + 0.5, j + 0.5)",
                        "satellite": {"model": "ORTHO", "gsd": cfg.satellite_gsd, "size": cfg.satellite_size,
                                      "camera_height": ORTHO_HEIGHT,
                                      "off_nadir_deg": list(cfg.satellite_off_nadir_deg),
                                      "projection": "u = X_cam.x / gsd + W/2, v = X_cam.y / gsd + H/2; "
                                                    "nadir R = diag(1, -1, -1); off-nadir: z = the tilted "
                                                    "view direction, x = east made perpendicular to z, "
                                                    "y = z cross x (north up to within the tilt); the "
                                                    "building centre (x, y, z) is at the tile centre"}},
            "counts": {"train": sum(b.split == "train" for b in layout.buildings),
                       "test": sum(b.split == "test" and b.role == "query" for b in layout.buildings),
                       "distractors": sum(b.role == "distractor" for b in layout.buildings),
                       "triangles": None}}


# ---------------------------------------------------------------------------- entry points

def _fresh_tmp(out: Path) -> Path:
    tmp = out.parent / f".{out.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)  # a previous interrupted run of ours
    tmp.mkdir(parents=True)
    return tmp


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        if any(out.iterdir()) and not (out / "meta" / "world.json").exists() \
                and not (out / "cameras.json").exists():
            shutil.rmtree(tmp)
            raise FileExistsError(f"{out}: exists and is not a generated synthetic world; refusing to replace it")
        old = out.parent / f".{out.name}.old"
        if old.exists():
            shutil.rmtree(old)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)


def generate_world(cfg: SynthConfig, out: Path, preview: bool = False, workers: int | None = None) -> Path:
    """Write the whole University-1652-layout tree and its ground truth into `out`.

    Written into a temporary sibling and renamed into place at the end, so an interrupted run never
    leaves a tree that looks finished. Same seed and config, same bytes.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    t0 = time.time()
    layout, mesh = build_world(cfg)
    renderer = Renderer(mesh, layout, cfg.seed, cfg.shadows)
    shots = plan_shots(cfg, layout, renderer)
    tmp = _fresh_tmp(out)
    try:
        # the folders the shots write into, plus every train building's google folder: empty ones are
        # normal in University-1652 (unlike empty drone or street folders, which the validator flags)
        folders = {str(Path(p).parent) for s in shots for p in s.paths}
        folders |= {f for b in layout.buildings for f in _folders(b, "google")}
        for f in sorted(folders):
            (tmp / f).mkdir(parents=True, exist_ok=True)
        render_shots(shots, tmp, cfg, mesh, layout, workers)
        meta = tmp / "meta"
        cams: dict[str, dict] = {b.id: {} for b in layout.buildings}
        truth = {}
        for s in shots:
            for p in s.paths:
                cams[s.building][p] = s.camera.to_json(s.view)
                if s.view == "google":
                    truth[p] = s.shows
        for bid, c in cams.items():
            _dump(c, meta / "cameras" / f"{bid}.json")
        _dump(truth, meta / "google_truth.json")
        _dump({b.id: building_record(cfg, b) for b in layout.buildings}, meta / "buildings.json")
        write_ply(mesh, meta / "scene.ply")
        rec = world_record(cfg, layout)
        rec["counts"]["triangles"] = int(len(mesh.tris))
        rec["counts"]["images"] = len(shots)
        if preview:
            from .preview import write_previews
            write_previews(tmp, layout, renderer, cfg)
        _dump(rec, meta / "world.json")  # last: its presence marks a complete tree
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    dt = time.time() - t0
    logger.info("synthetic world: %d buildings, %d images in %.1f s (%.1f images/s) -> %s",
                len(layout.buildings), len(shots), dt, len(shots) / max(dt, 1e-9), out)
    return out


def generate_building_drone(cfg: SynthConfig, out: Path, building_index: int = 0,
                            workers: int | None = None) -> Path:
    """Only one building's drone images (image-01.jpeg ...) with `cameras.json` (same schema as
    meta/cameras, keys are file names) and `building.json` (as in meta/buildings.json) in `out`."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    layout, mesh = build_world(cfg)
    if not 0 <= building_index < len(layout.buildings):
        raise ValueError(f"building_index {building_index} out of range 0..{len(layout.buildings) - 1}")
    b = layout.buildings[building_index]
    shots = plan_drone(cfg, layout, b, ["."])
    for s in shots:
        s.paths = [Path(p).name for p in s.paths]
    tmp = _fresh_tmp(out)
    try:
        render_shots(shots, tmp, cfg, mesh, layout, workers, desc=f"drone {b.id}")
        _dump({s.paths[0]: s.camera.to_json("drone") for s in shots}, tmp / "cameras.json")
        _dump({"id": b.id, **building_record(cfg, b)}, tmp / "building.json")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# ---------------------------------------------------------------------------- CLI

def config_from_dict(d: dict) -> SynthConfig:
    names = {f.name for f in fields(SynthConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"synth config: unknown keys {unknown}")
    return SynthConfig(**d)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--config", type=Path, help="YAML file; its `synth` section (or the whole file) is used")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field (YAML value)")
    ap.add_argument("--preview", action="store_true")
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)
    import yaml
    d: dict = {}
    if args.config:
        try:
            loaded = yaml.safe_load(args.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise SystemExit(f"{args.config}: cannot read config ({e})")
        d = dict(loaded.get("synth", loaded))
    for kv in args.set:
        k, _, v = kv.partition("=")
        d[k] = yaml.safe_load(v)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    generate_world(config_from_dict(d), args.out, preview=args.preview, workers=args.workers)


if __name__ == "__main__":
    main()
