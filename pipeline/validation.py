"""What each config value may be: a rule per `section.key` and a few rules across keys.

`pipeline.config` checks every value against this table when a config is loaded, so a bad value is
refused with its key, the value and what is allowed before any stage runs. Types are checked by the
loader; the rules here add ranges, choices and the relations between keys. Every config field must
have a rule (tests/pipeline/test_validation.py fails otherwise): a new field gets one here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Rule:
    ok: Callable[[Any], bool]
    allowed: str                 # what the message says is allowed
    choice: bool = False         # a choice among names: "is not allowed" rather than "is out of range"


def _in(x: Any, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or (isinstance(x, float) and math.isnan(x)):
        return False
    if lo is not None and (x <= lo if lo_open else x < lo):
        return False
    return not (hi is not None and (x >= hi if hi_open else x > hi))


def _span(kind: str, lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> str:
    if lo is not None and hi is not None:
        return f"{kind} in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{kind} {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f"{kind} {'<' if hi_open else '<='} {hi:g}"
    return kind


def integer(lo: int | None = None, hi: int | None = None) -> Rule:
    return Rule(lambda x: isinstance(x, int) and _in(x, lo, hi, False, False), _span("an integer", lo, hi))


def number(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False) -> Rule:
    return Rule(lambda x: _in(x, lo, hi, lo_open, hi_open), _span("a number", lo, hi, lo_open, hi_open))


def positive() -> Rule:
    return number(0, lo_open=True)


def share(lo_open: bool = False, hi_open: bool = False) -> Rule:
    """A fraction in [0, 1] (ends open as asked)."""
    return number(0, 1, lo_open, hi_open)


def choice(*options: Any) -> Rule:
    return Rule(lambda x: x in options, "one of " + ", ".join(map(str, options)), choice=True)


def flag() -> Rule:
    return Rule(lambda x: isinstance(x, bool), "true or false")


def text() -> Rule:
    return Rule(lambda x: isinstance(x, str) and x.strip() != "", "a non-empty string")


def optional(rule: Rule) -> Rule:
    return Rule(lambda x: x is None or rule.ok(x), f"{rule.allowed}, or null", rule.choice)


def pair(element: Rule, ordered: bool = True) -> Rule:
    """A [low, high] list of two values (low <= high when `ordered`)."""
    def ok(x: Any) -> bool:
        return (isinstance(x, (list, tuple)) and len(x) == 2 and all(element.ok(v) for v in x)
                and (not ordered or x[0] <= x[1]))
    return Rule(ok, f"[low, high] with low <= high, each {element.allowed}" if ordered
                else f"a list of two values, each {element.allowed}")


def int_set(lo: int, hi: int | None = None) -> Rule:
    """A non-empty list of distinct integers in range."""
    def ok(x: Any) -> bool:
        return (isinstance(x, (list, tuple)) and len(x) > 0 and len(set(x)) == len(x)
                and all(isinstance(v, int) and _in(v, lo, hi, False, False) for v in x))
    return Rule(ok, f"a non-empty list of distinct values, each {_span('an integer', lo, hi)}")


def names(*options: str) -> Rule:
    """A non-empty list of distinct names out of `options`."""
    def ok(x: Any) -> bool:
        return isinstance(x, (list, tuple)) and len(x) > 0 and len(set(x)) == len(x) and all(v in options for v in x)
    return Rule(ok, "a non-empty list of distinct names out of " + ", ".join(options), choice=True)


def backbone() -> Rule:
    return Rule(lambda x: isinstance(x, str) and (x in ("efficientnet_lite0", "efficientnet-lite0")
                                                 or (x.startswith("timm:") and len(x) > 5)),
                "efficientnet_lite0 or timm:<model name>", choice=True)


def odd(rule: Rule) -> Rule:
    return Rule(lambda x: rule.ok(x) and x % 2 == 1, "an odd " + rule.allowed.removeprefix("an ").removeprefix("a "))


def either(a: Rule, b: Rule) -> Rule:
    return Rule(lambda x: a.ok(x) or b.ok(x), f"{a.allowed}, or {b.allowed}")


DEVICE = choice("auto", "cpu", "cuda")
PIXELS = integer(16)
# COLMAP's camera models (pycolmap.CameraModelId), named as COLMAP spells them
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV", "OPENCV_FISHEYE", "FULL_OPENCV",
                 "FOV", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE", "THIN_PRISM_FISHEYE", "RAD_TAN_THIN_PRISM_FISHEYE")

RULES: dict[str, Rule] = {
    "name": text(),
    # data
    "data.source": choice("synthetic", "path"),
    "data.root": optional(text()),
    "data.validate": flag(),
    # synth: the generator's world
    "synth.seed": integer(0),
    "synth.n_train": integer(2),                   # a contrastive batch needs two buildings
    "synth.n_test": integer(1),
    "synth.n_distractors": integer(0),
    "synth.n_train_drone": optional(integer(0)),
    "synth.footprints": optional(text()),
    "synth.facade_styles": integer(1),
    "synth.roof_colours": integer(1),
    "synth.floors": pair(integer(1)),
    "synth.tower_share": share(),
    "synth.trees_per_building": integer(0),
    "synth.cars_per_building": integer(0),
    "synth.drone_images": integer(3, 99),          # SfM needs 3; names run image-01 ... image-99
    "synth.test_drone_images": optional(integer(1, 99)),   # test buildings' drone queries (null: drone_images)
    "synth.drone_groups": integer(1),
    "synth.drone_size": PIXELS,
    "synth.drone_fov_deg": number(0, 180, True, True),
    "synth.drone_elevation_deg": pair(number(0, 90, True), ordered=False),   # first, last
    "synth.drone_radius_scale": pair(positive(), ordered=False),             # first, last
    "synth.drone_exif": choice("gps_focal", "none"),
    "synth.drone_gps_noise_m": pair(number(0), ordered=False),               # horizontal, vertical
    "synth.geo_origin": Rule(lambda x: isinstance(x, (list, tuple)) and len(x) == 3
                             and _in(x[0], -90, 90, True, True) and _in(x[1], -180, 180, False, False)
                             and _in(x[2], None, None, False, False),
                             "[latitude in (-90, 90), longitude in [-180, 180], altitude in metres]"),
    "synth.satellite_size": PIXELS,
    "synth.satellite_gsd": positive(),
    "synth.satellite_off_nadir_deg": pair(number(0, 60, hi_open=True)),
    "synth.street_size": PIXELS,
    "synth.street_per_building": integer(1),
    "synth.test_street_per_building": optional(integer(1)),  # null: street_per_building
    "synth.street_fov_deg": pair(number(0, 180, True, True)),
    "synth.street_height_m": pair(number(0)),
    "synth.google_per_building": integer(0),
    "synth.google_wrong_share": share(),
    "synth.google_fov_deg": pair(number(0, 180, True, True)),
    "synth.google_height_m": pair(number(0)),
    "synth.sun_elevation_deg": pair(number(0, 90)),
    "synth.sun_azimuth_deg": pair(number(0, 360)),
    "synth.drone_sun_jitter_deg": number(0),
    "synth.ambient": pair(share()),
    "synth.exposure": pair(positive()),
    "synth.white_balance": share(hi_open=True),
    "synth.shadows": flag(),
    "synth.sensor_noise": number(0),
    "synth.jpeg_quality": integer(1, 100),
    # reconstruct
    "reconstruct.max_image_size": PIXELS,
    "reconstruct.max_num_features": integer(64),
    "reconstruct.sift_upsample": flag(),
    "reconstruct.matcher": choice("auto", "exhaustive", "sequential", "spatial"),
    "reconstruct.exhaustive_max_images": integer(2),
    "reconstruct.sequential_overlap": integer(1),
    "reconstruct.loop_closure_neighbors": integer(0),
    "reconstruct.spatial_neighbors": integer(1),
    "reconstruct.mapper": choice("incremental", "global", "global_checked"),
    "reconstruct.mapper_min_agreement": share(),
    "reconstruct.mapper_check_tol": positive(),
    "reconstruct.mapper_reregister": flag(),
    "reconstruct.flight_order_check": flag(),
    "reconstruct.camera_mode": choice("single", "per_image"),
    "reconstruct.camera_model": choice(*CAMERA_MODELS),
    "reconstruct.use_known_intrinsics": flag(),
    "reconstruct.use_position_priors": flag(),
    "reconstruct.use_exif_gps": flag(),
    "reconstruct.use_exif_focal": flag(),
    "reconstruct.min_registered_ratio": share(lo_open=True),
    "reconstruct.abs_pose_min_inliers": integer(3),
    "reconstruct.abs_pose_min_inlier_ratio": share(lo_open=True),
    "reconstruct.init_min_inliers": integer(3),
    "reconstruct.init_min_tri_angle": number(0, 90, True, True),
    "reconstruct.num_threads": either(choice(-1), integer(1)),
    "reconstruct.seed": integer(0),
    "reconstruct.align_max_error": positive(),
    "reconstruct.n_scales": integer(1),
    "reconstruct.outlier_neighbors": integer(1),
    "reconstruct.outlier_std_ratio": positive(),
    "reconstruct.dense_outlier_neighbors": integer(0),
    "reconstruct.dense_min_pixels": integer(1),
    "reconstruct.dense_mesh": flag(),
    "reconstruct.dense_mesh_depth": integer(4),
    "reconstruct.voxel_size": number(0),
    "reconstruct.dense": choice("auto", "torch", "colmap", "sparse"),
    "reconstruct.dense_voxel_size": number(0),
    "reconstruct.dense_crop_radius": number(0),
    "reconstruct.dense_min_valid": share(),
    "reconstruct.mvs_max_image_size": PIXELS,
    "reconstruct.mvs_planes": integer(2),
    "reconstruct.mvs_coarse_factor": integer(1),
    "reconstruct.mvs_refine_planes": integer(0),
    "reconstruct.mvs_refine_rounds": integer(0),
    "reconstruct.mvs_refine_smooth": odd(integer(1)),
    "reconstruct.mvs_sources": integer(1),
    "reconstruct.mvs_window": odd(integer(3)),
    "reconstruct.mvs_min_score": number(-1, 1),
    "reconstruct.mvs_geo_views": integer(0),
    "reconstruct.mvs_min_consistent": integer(0),
    "reconstruct.mvs_geo_pixel_error": number(0, lo_open=True),
    "reconstruct.mvs_geo_depth_error": number(0, lo_open=True),
    "reconstruct.mvs_device": DEVICE,
    # render
    "render.n_views": integer(1),
    "render.image_size": integer(8),
    "render.point_size": positive(),
    "render.world_point_size": optional(positive()),
    "render.max_point_size": integer(1),
    "render.device": DEVICE,
    "render.scales": int_set(1),
    "render.projection": choice("perspective", "orthographic"),
    "render.fov_deg": number(0, 180, True, True),
    "render.oblique_elevation_deg": number(-90, 90),
    "render.low_elevation_deg": number(-90, 90),
    "render.ground_percentile": number(0, 100),
    "render.center_prior": optional(pair(number(), ordered=False)),
    "render.axis_search": positive(),
    "render.min_view_share": number(0, 1),
    "render.frame_margin": positive(),
    "render.radius_percentile": number(0, 100, lo_open=True),
    "render.view_radius": optional(positive()),
    "render.dsm_fill_px": integer(0),
    "render.background": integer(0, 255),
    # enhance (GREM)
    "enhance.keep_share": share(lo_open=True),
    "enhance.score": choice("mean", "max"),
    "enhance.image_size": integer(32),
    "enhance.batch_size": integer(1),
    "enhance.encoder": backbone(),
    "enhance.encoder_weights": optional(text()),
    "enhance.device": DEVICE,
    # train
    "train.seed": integer(0),
    "train.epochs": integer(1),
    "train.batch_size": integer(2),                # InfoNCE needs at least one negative per sample
    "train.samples_per_building": integer(1),
    "train.image_size": integer(32),               # the backbone's stride
    "train.satellite_image_size": either(choice(0), integer(32)),
    "train.device": DEVICE,
    "train.backbone": backbone(),
    "train.backbone_weights": optional(text()),
    "train.pretrained": flag(),
    "train.feature_stride": choice(16, 32),
    "train.freeze_stages": integer(0, 7),
    "train.bn_momentum": share(lo_open=True),
    "train.drop_connect_rate": share(hi_open=True),
    "train.head": choice("pafa", "gem"),
    "train.pafa_proj_channels": integer(1),
    "train.pafa_grid": integer(1),
    "train.pafa_depth": integer(1),
    "train.pafa_mlp_ratio": positive(),
    "train.pafa_out_channels": integer(1),
    "train.pafa_out_rows": integer(1),
    "train.gem_p": positive(),
    "train.use_3d": flag(),
    "train.scales": int_set(1),
    "train.render_modalities": names("color", "depth", "height", "normals"),
    "train.render_image_size": integer(32),
    "train.render_height_range": number(0),
    "train.render_encoder": backbone(),
    "train.render_feature_dim": integer(1),
    "train.adapter_hidden": integer(1),
    "train.adapter_residual": share(),
    "train.adapter_dropout": share(hi_open=True),
    "train.view_dropout": share(hi_open=True),
    "train.use_grem": flag(),
    "train.temperature_init": positive(),
    "train.learn_temperature": flag(),
    "train.label_smoothing": share(hi_open=True),
    "train.w_street_satellite": number(0),
    "train.w_drone_satellite": number(0),
    "train.w_street_3d": number(0),
    "train.w_3d_satellite": number(0),
    "train.w_geometry": number(0),
    "train.w_render_satellite": number(0),
    "train.render_satellite_source": choice("renders", "drone", "drone+renders"),
    "train.w_render_street": number(0),
    "train.ssl_weight": number(0),
    "train.ssl_3d_weight": optional(number(0)),
    "train.flown_per_batch": integer(0),
    "train.neighbour_sampling": flag(),
    "train.positions_file": text(),
    "train.similarity_sampling": flag(),
    "train.similarity_start_epoch": integer(0),
    "train.hard_negative_group": integer(1),
    "train.hard_negative_pool": integer(1),
    "train.street_crop_scale": pair(share(lo_open=True)),
    "train.color_jitter": share(),
    "train.blur_prob": share(),
    "train.satellite_rot90": flag(),
    "train.lr": positive(),
    "train.backbone_lr_scale": number(0),
    "train.weight_decay": number(0),
    "train.warmup_epochs": number(0),
    "train.grad_clip": number(0),
    "train.amp": flag(),
    "train.num_workers": integer(0),
    "train.threads": integer(0),
    "train.nproc_per_node": integer(1),
    "train.cache_images": integer(0),
    "train.max_buildings": optional(integer(2)),
    "train.val_share": share(hi_open=True),
    "train.val_min_train": integer(0),
    "train.keep_checkpoints": integer(1),
    # index
    "index.kind": choice("flat", "ivf", "hnsw", "auto"),
    "index.auto_threshold": integer(1),
    "index.nlist": integer(0),
    "index.nprobe": integer(1),
    "index.hnsw_m": integer(2),
    "index.ef_construction": integer(1),
    "index.ef_search": integer(1),
    "index.checkpoint": text(),
    "index.batch_size": integer(1),
    "index.image_size": either(choice(0), integer(32)),
    "index.device": DEVICE,
    # evaluate
    "evaluate.ks": int_set(1),
    "evaluate.top_k": integer(1),
    "evaluate.curve_max_k": integer(1),
    "evaluate.device": DEVICE,
    "evaluate.answer": flag(),
    # report
    "report.n_examples": integer(0),
    "report.snapshots": flag(),
    "report.max_buildings": integer(0),
    "report.render_buildings": integer(0),
    "report.examples_top_k": integer(1),
    "report.curve_max_k": integer(1),
    # executor
    "executor.kind": choice("local", "ray"),
    "executor.workers": integer(1),
    "executor.ray_address": optional(text()),
}


def _get(cfg: Any, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name) if name else getattr(cfg, section)


@dataclass(frozen=True)
class CrossRule:
    keys: tuple[str, ...]
    check: Callable[[Any], str | None]     # the config -> what is wrong, or None


CROSS_RULES: list[CrossRule] = [
    CrossRule(("data.source", "data.root"), lambda c: "data.root: not set, but data.source is 'path' "
              "(allowed: a dataset folder, e.g. --set data.root=DIR)" if c.data.source == "path" and not c.data.root else None),
    CrossRule(("synth.n_train_drone", "synth.n_train"), lambda c: (
        f"synth.n_train_drone: {c.synth.n_train_drone} is out of range (allowed: at most synth.n_train = {c.synth.n_train})"
        if c.synth.n_train_drone is not None and c.synth.n_train_drone > c.synth.n_train else None)),
    CrossRule(("synth.drone_images", "synth.drone_groups"), lambda c: (
        f"synth.drone_images: {c.synth.drone_images} is not allowed (allowed: a multiple of synth.drone_groups = "
        f"{c.synth.drone_groups}, at least 3 per group)"
        if c.synth.drone_images % c.synth.drone_groups or c.synth.drone_images < 3 * c.synth.drone_groups else None)),
    CrossRule(("synth.test_drone_images", "synth.drone_groups"), lambda c: (
        f"synth.test_drone_images: {c.synth.test_drone_images} is not allowed (allowed: a multiple of "
        f"synth.drone_groups = {c.synth.drone_groups}, or null)"
        if c.synth.test_drone_images is not None and c.synth.test_drone_images % c.synth.drone_groups else None)),
    CrossRule(("render.scales", "reconstruct.n_scales"), lambda c: (
        f"render.scales: {list(c.render.scales)} is out of range (allowed: scales 1..reconstruct.n_scales = "
        f"{c.reconstruct.n_scales})" if max(c.render.scales) > c.reconstruct.n_scales else None)),
    CrossRule(("train.scales", "render.scales", "train.use_3d"), lambda c: (
        f"train.scales: {list(c.train.scales)} is not allowed (allowed: scales the render stage draws, "
        f"render.scales = {list(c.render.scales)})"
        if c.train.use_3d and not set(c.train.scales) <= set(c.render.scales) else None)),
    CrossRule(("reconstruct.mvs_min_consistent", "reconstruct.mvs_geo_views"), lambda c: (
        f"reconstruct.mvs_min_consistent: {c.reconstruct.mvs_min_consistent} is out of range (allowed: at most "
        f"reconstruct.mvs_geo_views = {c.reconstruct.mvs_geo_views})"
        if c.reconstruct.mvs_min_consistent > c.reconstruct.mvs_geo_views else None)),
    CrossRule(("render.max_point_size", "render.point_size"), lambda c: (
        f"render.max_point_size: {c.render.max_point_size} is out of range (allowed: at least render.point_size = "
        f"{c.render.point_size:g})" if c.render.max_point_size < c.render.point_size else None)),
]


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        value = list(value)
    return repr(value)


def check_value(key: str, value: Any) -> str | None:
    """What is wrong with one value, or None (keys without a rule pass: the loader rejects unknown keys)."""
    rule = RULES.get(key)
    if rule is None or rule.ok(value):
        return None
    return f"{key}: {_show(value)} is {'not allowed' if rule.choice else 'out of range'} (allowed: {rule.allowed})"


def problems(cfg: Any) -> list[str]:
    """Every problem of a loaded config: each value on its own, then (when those pass) the cross-field rules."""
    out = []
    for key in RULES:
        if _has(cfg, key):
            msg = check_value(key, _get(cfg, key))
            if msg:
                out.append(msg)
    if out:  # cross-field rules assume each value is valid on its own
        return out
    for rule in CROSS_RULES:
        if all(_has(cfg, k) for k in rule.keys):
            msg = rule.check(cfg)
            if msg:
                out.append(msg)
    return out


def _has(cfg: Any, key: str) -> bool:
    section, _, name = key.partition(".")
    return hasattr(cfg, section) and (not name or hasattr(getattr(cfg, section), name))
