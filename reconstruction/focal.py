"""Focal length in pixels from an image's EXIF (exifread): the initial intrinsics of a real camera.

Two ways, best first: FocalLength (mm) times FocalPlaneXResolution (pixels per unit of the sensor,
for the width in PixelXDimension, so a downscaled photo is rescaled), or FocalLengthIn35mmFilm (the
focal giving the same field of view across a 36 x 24 mm frame's 43.27 mm diagonal). Bundle
adjustment still refines the value: EXIF focal lengths are rounded and lenses breathe.
"""
from __future__ import annotations

import math
from pathlib import Path

from reconstruction.gps import read_exif_tags

FILM_DIAGONAL_MM = 43.27
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}  # FocalPlaneResolutionUnit: inch, cm, mm, um


def _ratio(tag) -> float | None:
    try:
        v = tag.values[0]
        return float(v.num) / float(v.den) if hasattr(v, "num") else float(v)
    except (AttributeError, IndexError, ValueError, ZeroDivisionError, TypeError):
        return None


def focal_px_from_tags(tags: dict, width: int, height: int) -> tuple[float, str] | None:
    """(focal in pixels, which tags gave it) for an image of `width` x `height` pixels, or None."""
    f_mm = _ratio(tags["EXIF FocalLength"]) if "EXIF FocalLength" in tags else None
    res = _ratio(tags["EXIF FocalPlaneXResolution"]) if "EXIF FocalPlaneXResolution" in tags else None
    if f_mm and res and f_mm > 0 and res > 0:
        unit = tags.get("EXIF FocalPlaneResolutionUnit")
        unit_mm = _UNIT_MM.get(int(unit.values[0]) if unit is not None and unit.values else 2)
        exif_w = tags.get("EXIF ExifImageWidth")
        exif_w = float(exif_w.values[0]) if exif_w is not None and exif_w.values else float(width)
        if unit_mm:
            return f_mm * res / unit_mm * (width / exif_w), "FocalLength x FocalPlaneXResolution"
    f35 = _ratio(tags["EXIF FocalLengthIn35mmFilm"]) if "EXIF FocalLengthIn35mmFilm" in tags else None
    if f35 and f35 > 0:
        return f35 * math.hypot(width, height) / FILM_DIAGONAL_MM, "FocalLengthIn35mmFilm"
    return None


def read_exif_focal(path: Path, width: int, height: int) -> tuple[float, str] | None:
    """Focal length in pixels of the image at `path` from its EXIF, or None when it has none."""
    tags = read_exif_tags(path, "focal prior")
    return None if tags is None else focal_px_from_tags(tags, width, height)
