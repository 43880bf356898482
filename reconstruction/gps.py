"""GPS positions from EXIF (exifread) as local east-north-up metres: position priors for real drone photos."""
from __future__ import annotations

import logging
from pathlib import Path

import exifread
import numpy as np
import pycolmap

logger = logging.getLogger("skylink")


def _ratio(value) -> float:
    return float(value.num) / float(value.den) if value.den else 0.0


def _dms(tag) -> float:
    d, m, s = (_ratio(v) for v in tag.values)
    return d + m / 60.0 + s / 3600.0


def read_exif_tags(path: Path, purpose: str) -> dict | None:
    """An image's EXIF tags (exifread), or None with a warning naming what is lost (`purpose`)."""
    try:
        with open(path, "rb") as f:
            return exifread.process_file(f, details=False)
    except Exception as e:  # a damaged EXIF block only costs this image's prior
        logger.warning("%s: unreadable EXIF (%s); no %s", path, e, purpose)
        return None


def read_exif_gps(path: Path) -> np.ndarray | None:
    """(latitude, longitude, altitude) in degrees and metres from an image's EXIF, or None."""
    tags = read_exif_tags(path, "GPS prior")
    if tags is None:
        return None
    try:
        lat = _dms(tags["GPS GPSLatitude"])
        lon = _dms(tags["GPS GPSLongitude"])
    except (KeyError, ValueError, ZeroDivisionError):
        return None
    if str(tags.get("GPS GPSLatitudeRef", "N")).strip().upper().startswith("S"):
        lat = -lat
    if str(tags.get("GPS GPSLongitudeRef", "E")).strip().upper().startswith("W"):
        lon = -lon
    alt = 0.0
    if "GPS GPSAltitude" in tags:
        alt = _ratio(tags["GPS GPSAltitude"].values[0])
        ref = tags.get("GPS GPSAltitudeRef")
        if ref is not None and ref.values and ref.values[0] == 1:  # 1: below sea level
            alt = -alt
    return np.array([lat, lon, alt], dtype=np.float64)


def wgs84_to_enu(lla: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """Latitude/longitude/altitude rows (N, 3) to east-north-up metres around `origin` (lat, lon, alt)."""
    gps = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84)
    return np.asarray(gps.ellipsoid_to_enu(np.atleast_2d(lla).astype(np.float64), *map(float, origin)))


def exif_gps_priors(image_dir: Path, names: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """ENU metre positions of the images that carry GPS, and the origin (mean lat, lon, alt) used."""
    lla = {n: g for n in names if (g := read_exif_gps(image_dir / n)) is not None}
    if not lla:
        return {}, None
    arr = np.stack(list(lla.values()))
    origin = arr.mean(axis=0)
    enu = wgs84_to_enu(arr, origin)
    return dict(zip(lla, enu)), origin
