"""Focal length in pixels from EXIF: the exact sensor-resolution route, the 35 mm equivalent, none."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import piexif
import pytest

from reconstruction.focal import FILM_DIAGONAL_MM, read_exif_focal
from synthetic.exif import exif_bytes, insert_exif


def _jpeg(path: Path, w: int, h: int, exif: bytes) -> Path:
    ok, buf = cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8))
    assert ok
    path.write_bytes(insert_exif(buf.tobytes(), exif))
    return path


def test_focal_plane_resolution_gives_the_exact_focal(tmp_path):
    p = _jpeg(tmp_path / "a.jpg", 320, 240, exif_bytes(None, 277.1, 320, 240))
    f, how = read_exif_focal(p, 320, 240)
    assert f == pytest.approx(277.1, rel=1e-4) and "FocalPlane" in how
    # a photo downscaled after capture keeps its EXIF: the focal scales with the width
    f, _ = read_exif_focal(p, 160, 120)
    assert f == pytest.approx(277.1 / 2, rel=1e-4)


def test_35mm_equivalent_and_no_exif(tmp_path):
    exif = piexif.dump({"Exif": {piexif.ExifIFD.FocalLengthIn35mmFilm: 24}})
    p = _jpeg(tmp_path / "b.jpg", 400, 300, exif)
    f, how = read_exif_focal(p, 400, 300)
    assert f == pytest.approx(24 * math.hypot(400, 300) / FILM_DIAGONAL_MM) and how == "FocalLengthIn35mmFilm"
    assert read_exif_focal(_jpeg(tmp_path / "c.jpg", 64, 64, b""), 64, 64) is None
