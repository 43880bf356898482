"""What a real drone writes into its photos: EXIF GPS (noisy, WGS84) and the lens focal length.

The world is laid out in local east-north-up metres; a fixed geodetic origin per world
(`synth.geo_origin`) turns camera centres into latitude, longitude and altitude. GPS noise is drawn
per image from its own generator, so an image's bytes do not depend on the others'. University-1652's
drone images carry no EXIF at all: `synth.drone_exif: none` writes none.
"""
from __future__ import annotations

import io

import numpy as np
import piexif
import pycolmap

from .camera import Camera
from .config import SynthConfig
from .layout import rng_for

EXIF_MODES = ("gps_focal", "none")
SENSOR_WIDTH_MM = 6.17   # a 1/2.3" sensor, as on Phantom-class drones: gives a plausible FocalLength in mm
FILM_DIAGONAL_MM = 43.27  # FocalLengthIn35mmFilm: same field of view across the diagonal of a 36 x 24 mm frame


def enu_to_wgs84(enu: np.ndarray, origin: list[float]) -> np.ndarray:
    """East-north-up metre rows (N, 3) to (latitude, longitude, altitude) around origin (lat, lon, alt)."""
    gps = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84)
    return np.asarray(gps.enu_to_ellipsoid(np.atleast_2d(enu).astype(np.float64), *map(float, origin)))


def noisy_centre(cfg: SynthConfig, building_index: int, image_index: int, centre: np.ndarray) -> np.ndarray:
    """The camera centre as a consumer GNSS receiver reports it: Gaussian noise, larger vertically."""
    rng = rng_for(cfg.seed, "drone-gps", building_index, image_index)
    h, v = (float(s) for s in cfg.drone_gps_noise_m)
    return np.asarray(centre, dtype=np.float64) + rng.normal(0.0, 1.0, 3) * [h, h, v]


def _rational(x: float, den: int) -> tuple[int, int]:
    return int(round(abs(x) * den)), den


def _dms(deg: float) -> tuple[tuple[int, int], ...]:
    deg = abs(deg)
    d = int(deg)
    m = int((deg - d) * 60)
    s = (deg - d - m / 60) * 3600
    return (d, 1), (m, 1), _rational(s, 10000)   # 1e-4 arc seconds: ~3 mm


def exif_bytes(lla: np.ndarray | None, focal_px: float | None, width: int, height: int) -> bytes:
    """An EXIF block with GPS (lat, lon, alt) and/or the focal length (FocalLength with
    FocalPlaneXResolution gives the pixel focal exactly; FocalLengthIn35mmFilm is the rounded
    35 mm equivalent that many readers use)."""
    zeroth = {piexif.ImageIFD.Make: b"SkyLink", piexif.ImageIFD.Model: b"synthetic drone"}
    exif: dict = {piexif.ExifIFD.PixelXDimension: int(width), piexif.ExifIFD.PixelYDimension: int(height)}
    gps: dict = {}
    if focal_px is not None:
        f_mm = focal_px * SENSOR_WIDTH_MM / width
        exif |= {
            piexif.ExifIFD.FocalLength: _rational(f_mm, 100000),
            piexif.ExifIFD.FocalPlaneXResolution: _rational(width / (SENSOR_WIDTH_MM / 10.0), 10000),
            piexif.ExifIFD.FocalPlaneYResolution: _rational(width / (SENSOR_WIDTH_MM / 10.0), 10000),
            piexif.ExifIFD.FocalPlaneResolutionUnit: 3,   # centimetres
            piexif.ExifIFD.FocalLengthIn35mmFilm: int(round(focal_px * FILM_DIAGONAL_MM / float(np.hypot(width, height)))),
        }
    if lla is not None:
        lat, lon, alt = (float(x) for x in lla)
        gps = {
            piexif.GPSIFD.GPSVersionID: (2, 3, 0, 0),
            piexif.GPSIFD.GPSLatitudeRef: b"N" if lat >= 0 else b"S",
            piexif.GPSIFD.GPSLatitude: _dms(lat),
            piexif.GPSIFD.GPSLongitudeRef: b"E" if lon >= 0 else b"W",
            piexif.GPSIFD.GPSLongitude: _dms(lon),
            piexif.GPSIFD.GPSAltitudeRef: 0 if alt >= 0 else 1,
            piexif.GPSIFD.GPSAltitude: _rational(alt, 1000),
            piexif.GPSIFD.GPSMapDatum: b"WGS-84",
        }
    return piexif.dump({"0th": zeroth, "Exif": exif, "GPS": gps, "1st": {}, "thumbnail": None})


def drone_exif(cfg: SynthConfig, building_index: int, image_index: int, cam: Camera) -> bytes:
    """The EXIF block of one drone image, or b"" when the world writes none."""
    if cfg.drone_exif == "none":
        return b""
    lla = enu_to_wgs84(noisy_centre(cfg, building_index, image_index, cam.center), cfg.geo_origin)[0]
    return exif_bytes(lla, float(cam.K[0, 0]), cam.width, cam.height)


def insert_exif(jpeg: bytes, exif: bytes) -> bytes:
    """The JPEG with `exif` as its APP1 segment (no re-encoding: the pixels stay byte-identical)."""
    if not exif:
        return jpeg
    out = io.BytesIO()
    piexif.insert(exif, jpeg, out)
    return out.getvalue()
