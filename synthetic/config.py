"""Configuration of the synthetic world generator (the `synth` section)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SynthConfig:
    """One procedural campus rendered into the University-1652 layout.

    Ranges are `[low, high]` lists drawn uniformly per building or per image. Defaults are the
    "demo" size; see DESIGN.md section 4 for why the world is built the way it is.
    """

    seed: int = 0
    # splits
    n_train: int = 8            # buildings with all views in train/
    n_test: int = 6             # query buildings in test/ (disjoint from train)
    n_distractors: int = 3      # gallery-only satellite tiles in test/
    # train buildings flown by the drone (a seeded random subset; None: all). The others have satellite,
    # street and google images only, as places no flight reached. Reconstruction costs far more than
    # rendering, so this is how a training set of hundreds of buildings stays cheap: the 3D bridge
    # aligns the flown ones, and cross-view training needs many buildings.
    n_train_drone: int | None = None
    footprints: str | None = None   # optional GeoJSON of footprint polygons in metres (local ENU)
    # campus style: how many facade styles and roof colours the campus palette holds; buildings
    # draw facade and roof independently from it, so several buildings share a style
    facade_styles: int = 4
    roof_colours: int = 4
    floors: list[int] = field(default_factory=lambda: [2, 9])
    tower_share: float = 0.12   # share of buildings with 12-22 floors
    trees_per_building: int = 14
    cars_per_building: int = 8
    # drone: a descending spiral looking at the building centre, one turn per altitude group
    drone_images: int = 54      # a multiple of drone_groups; named image-01.jpeg ...
    # drone images per test building (None: drone_images), on the same spiral: the drone->satellite
    # queries, cheaper where a test split of many buildings is wanted
    test_drone_images: int | None = None
    drone_groups: int = 3
    drone_size: int = 256
    drone_fov_deg: float = 60.0
    drone_elevation_deg: list[float] = field(default_factory=lambda: [55.0, 25.0])  # first, last
    drone_radius_scale: list[float] = field(default_factory=lambda: [1.15, 0.85])   # x orbit_radius
    # what the drone writes into each image's EXIF: gps_focal (GPS with noise + focal length, as a real
    # drone does) or none (University-1652's drone images carry neither). Reconstruction reads only this.
    drone_exif: str = "gps_focal"
    drone_gps_noise_m: list[float] = field(default_factory=lambda: [2.0, 5.0])  # sigma: horizontal (per axis), vertical
    geo_origin: list[float] = field(default_factory=lambda: [47.3763, 8.5477, 410.0])  # lat, lon, alt of ENU (0, 0, 0)
    # satellite: north-up orthographic tile centred on the building. Real tiles (University-1652 uses
    # Google Maps) are rarely straight down: tall buildings lean and show a slice of one or two
    # facades. Each tile draws an off-nadir angle from this range and a random azimuth; [0, 0] is nadir.
    satellite_size: int = 256
    satellite_gsd: float = 0.4  # metres per pixel
    satellite_off_nadir_deg: list[float] = field(default_factory=lambda: [5.0, 25.0])
    # street: ground-level, narrow, often occluded, building not always centred
    street_size: int = 256
    street_per_building: int = 3
    # street views per test building (None: street_per_building): more street queries without a larger
    # training set
    test_street_per_building: int | None = None
    street_fov_deg: list[float] = field(default_factory=lambda: [35.0, 55.0])
    street_height_m: list[float] = field(default_factory=lambda: [1.5, 2.5])
    # google: extra street-level images, a share of which show other buildings
    google_per_building: int = 4
    google_wrong_share: float = 0.4
    google_fov_deg: list[float] = field(default_factory=lambda: [40.0, 75.0])
    google_height_m: list[float] = field(default_factory=lambda: [1.5, 12.0])
    # lighting, per image (drone images of one flight share the sun, jittered by drone_sun_jitter_deg)
    sun_elevation_deg: list[float] = field(default_factory=lambda: [25.0, 70.0])
    sun_azimuth_deg: list[float] = field(default_factory=lambda: [0.0, 360.0])
    drone_sun_jitter_deg: float = 3.0
    ambient: list[float] = field(default_factory=lambda: [0.40, 0.60])
    exposure: list[float] = field(default_factory=lambda: [0.85, 1.15])
    white_balance: float = 0.06  # +- per-channel gain jitter
    shadows: bool = True
    sensor_noise: float = 0.01
    jpeg_quality: int = 92
