"""Configuration of the 3D stages (the `reconstruct` and `render` sections)."""
from __future__ import annotations

from dataclasses import dataclass, field

# Fields added after 3D caches were built carry this metadata: at their default they drop out of the
# stage's cache key (retrieval.config.key_dict), so adding them keeps finished caches valid.
ADDED_LATER = {"added_later": True}


@dataclass
class ReconstructConfig:
    """Per-building SfM (pycolmap), alignment into a metric gravity-up frame and multi-scale clouds."""

    # features
    max_image_size: int = 512
    max_num_features: int = 4096
    sift_upsample: bool = True       # SIFT from the 2x upsampled image: ~3x the points at <= 512 px, ~3x the time
    # matching: auto picks exhaustive up to exhaustive_max_images, else spatial with position priors,
    # else sequential with retrieval loop closure
    matcher: str = "auto"            # auto | exhaustive | sequential | spatial
    exhaustive_max_images: int = 30
    sequential_overlap: int = 6      # neighbours in capture order matched with each image
    loop_closure_neighbors: int = 5  # retrieved look-alike images per image (0: none)
    spatial_neighbors: int = 10      # nearest prior positions matched with each image
    # mapping
    # incremental | global (COLMAP's global mapper) | global_checked (both; the global model is kept where
    # the incremental one confirms its cameras, reconstruction/crosscheck.py). The global mapper alone,
    # with mvs_sources 5, raised dense accuracy / completeness / facades by +5.0 / +7.9 / +9.4 points on
    # 16 validation buildings (seed 2, 600 training buildings) but broke some buildings outright (validation
    # 4661, demo 0703). Checked, +4.9 / +7.8 / +9.3 there and +6.1 / +10.1 / +11.7 on the other validation
    # world (seed 2, 4661 caught and kept incremental), no camera misplaced that only one mapper misplaces,
    # for 1 s more per 27-image building, 8 s per 54-image one (README; bench/reconstruct_mapper_val*.json)
    mapper: str = "global_checked"
    # the check: cameras agree within mapper_check_tol of the orbit's size; below mapper_min_agreement of
    # the common cameras agreeing the global model counts as broken (0703: 57%, every other one >= 78%)
    mapper_min_agreement: float = field(default=0.7, metadata=ADDED_LATER)
    mapper_check_tol: float = field(default=0.05, metadata=ADDED_LATER)
    # then register the dropped cameras again: the incremental mapper continues from the checked model,
    # its cameras and intrinsics held fixed, placing each dropped image against the model's confirmed
    # points. On both validation worlds every image came back (432 of 432 each, none misplaced), paired
    # against the checked model: completeness +1.6 / +1.5 points, accuracy -1.1 [-3.1, +0.1] / 0.0 (README)
    mapper_reregister: bool = True
    # the drone takes its images in order around the building: a camera whose bearing about the orbit
    # axis breaks that order sits at a mirror position (reconstruction/flight.py). The check decides
    # between the two mappers where the cross-check finds the global model broken, and drops the kept
    # model's cameras that break the order. A plain field: caches built without it rebuild (README)
    flight_order_check: bool = True
    camera_mode: str = "single"      # single (shared intrinsics) | per_image
    camera_model: str = "SIMPLE_RADIAL"  # used when intrinsics are unknown
    use_known_intrinsics: bool = True
    use_position_priors: bool = True
    use_exif_gps: bool = True        # GPS in EXIF -> local ENU priors when none are given
    use_exif_focal: bool = True      # EXIF focal length -> initial focal (refined) when no intrinsics are given
    min_registered_ratio: float = 0.5
    # incremental mapper thresholds: COLMAP's defaults (30 inliers at ratio 0.25 to register an image,
    # 100 inliers and 16 degrees for the initial pair) suit megapixel photos; 256-384 px drone images
    # hold 1-2k features. On the demo world's 27-image flights without priors these register 27, 27
    # and 23 of 27 images on three buildings where the defaults registered 25, 26 and 11.
    abs_pose_min_inliers: int = 15
    abs_pose_min_inlier_ratio: float = 0.15
    init_min_inliers: int = 50
    init_min_tri_angle: float = 8.0  # degrees
    num_threads: int = -1            # -1: all cores
    seed: int = 0
    # alignment: RANSAC inlier threshold as a fraction of the priors' extent
    align_max_error: float = 0.05
    # multi-scale clouds
    n_scales: int = 3
    outlier_neighbors: int = 20      # statistical outlier removal of the sparse clouds (open3d)
    outlier_std_ratio: float = 2.0
    voxel_size: float = 0.005        # fraction of the orbit radius (0: no downsampling)
    # dense clouds (reconstruction/dense.py): scale{k}.ply; the sparse ones stay as sparse_scale{k}.ply
    dense: str = "auto"              # auto (COLMAP PatchMatch if pycolmap has CUDA, else torch) | torch | colmap | sparse
    dense_voxel_size: float = 0.004  # fraction of the orbit radius
    dense_crop_radius: float = 0.75  # keep points within this many orbit radii of the orbit axis (0: all)
    # fusion filters, both off since 2026-12-01 (normals now come from the depth maps, so fusing the
    # 54-image tiny building takes 0.9 s instead of 8 s): open3d's statistical outlier removal over this
    # many neighbours, and COLMAP's min_num_pixels (voxels fused from fewer pixels are dropped). Each
    # trades completeness for accuracy (README, bench/dense_diagnosis.py)
    dense_outlier_neighbors: int = 0
    dense_min_pixels: int = field(default=1, metadata=ADDED_LATER)
    # mesh.ply for viewing (`skylink inspect --mesh`): screened Poisson over the dense clouds of all
    # scales (reconstruction/mesh.py); 6.3 s per 27-image demo building at depth 8 on 2 cores (README)
    dense_mesh: bool = field(default=False, metadata=ADDED_LATER)
    dense_mesh_depth: int = field(default=8, metadata=ADDED_LATER)
    dense_min_valid: float = 0.02    # share of consistent depth-map pixels below which the sparse clouds are kept
    mvs_max_image_size: int = 256    # depth-map resolution (longest side)
    mvs_planes: int = 32             # inverse-depth planes of the coarse sweep
    mvs_coarse_factor: int = 2       # coarse sweep at 1/this of the depth-map resolution
    # Rounds after the first centre on the previous estimate's 5 x 5 mean (on the raw estimate before):
    # on the validation world accuracy / completeness at tau 1% +7.6 / +5.2 points at the same cost
    # (bench/dense_refine_validation.json, README "Refinement rounds")
    mvs_refine_planes: int = 5       # hypotheses per refinement round at full resolution (0: none)
    mvs_refine_rounds: int = 3       # rounds, each over +-1 hypothesis step of the previous one
    mvs_refine_smooth: int = 5       # k x k mean the later rounds centre on (1: on the raw estimate)
    mvs_sources: int = 5             # co-visible source images per depth map (3 before; chosen with the mapper)
    mvs_window: int = 7              # ZNCC window (pixels)
    mvs_min_score: float = 0.5       # photometric confidence (mean of the best 2 ZNCCs)
    mvs_geo_views: int = 6           # neighbours of the geometric consistency check
    mvs_min_consistent: int = 1      # neighbours that must agree with a depth
    mvs_device: str = "auto"         # auto | cpu | cuda
    # geometric-consistency tolerances: reprojection error (depth-map pixels) and relative depth error.
    # On the validation world 2.0 / 0.008 with mvs_sources 5, mvs_geo_views 10 and mvs_min_consistent 2
    # raised accuracy at 1% by 5-8 points for about the completeness of the defaults (bench/dense_diagnosis.py)
    mvs_geo_pixel_error: float = field(default=1.0, metadata=ADDED_LATER)
    mvs_geo_depth_error: float = field(default=0.004, metadata=ADDED_LATER)


@dataclass
class RenderConfig:
    """Views of each building's point clouds (reconstruction/render.py); frame: metres, z up."""

    n_views: int = 10                # view00 nadir (orthographic), then an oblique ring, then a low ring
    image_size: int = 128            # pixels (square views and DSM)
    point_size: float = 2.0          # splat side in pixels
    world_point_size: float | None = None  # splat side in metres (overrides point_size; grows when near)
    max_point_size: int = 8          # cap of world-size splats, pixels
    device: str = "auto"             # auto | cpu | cuda
    scales: tuple[int, ...] = (1, 2, 3)
    projection: str = "perspective"  # perspective | orthographic (ring views; the nadir is always orthographic)
    fov_deg: float = 60.0
    oblique_elevation_deg: float = 45.0
    low_elevation_deg: float = 0.0   # the low ring looks horizontally at the building's mid-height
    ground_percentile: float = 5.0   # ground level = this percentile of the points' z
    # Framing: the target building stands on the drone orbit's axis (fitted to the registered cameras,
    # or `center_prior`); its extent is the structure above ground within `axis_search` orbit radii.
    center_prior: tuple[float, float] | None = None  # x, y of the building in the reconstruction's frame
    axis_search: float = 0.75        # structure search radius, in orbit radii
    min_view_share: float = 0.9      # the building's points are in view of at least this share of the cameras
    frame_margin: float = 1.1        # the building's box fits the image shrunk by this factor
    radius_percentile: float = 95.0  # without cameras: search radius = this percentile of the points' distance
    view_radius: float | None = None  # metres; a bounding sphere of this radius instead of fitted framing
    dsm_fill_px: int = 2             # DSM gaps up to this many pixels take the nearest height
    background: int = 0              # colour of empty pixels (0-255 grey level)
