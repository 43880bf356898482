"""The flight-order check: cameras whose bearing about the orbit axis breaks the order the images were taken in."""
from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from reconstruction.align import camera_centres
from reconstruction.crosscheck import cross_check
from reconstruction.flight import check_bearings, flight_order
from reconstruction.sfm import check_flight_order
from tests.reconstruction.test_align import orbit_reconstruction, random_sim3
from tests.reconstruction.test_crosscheck import _misplace

FLIGHT = [f"image-{i:02d}.jpeg" for i in range(1, 28)]
MIRRORED = ["image-03.jpeg", "image-04.jpeg", "image-05.jpeg", "image-06.jpeg", "image-12.jpeg", "image-13.jpeg"]


@pytest.fixture(scope="module")
def orbit():
    return orbit_reconstruction(n_images=27)


def test_a_true_orbit_follows_its_flight_in_any_frame(orbit):
    rec = pycolmap.Reconstruction(orbit[0])
    rec.transform(random_sim3(3))
    order = flight_order(rec, FLIGHT)
    assert order.applies and order.off == [] and len(order.consistent) == 27
    assert abs(abs(order.step_deg) - 40.0) < 0.5  # three turns over 27 images


def test_mirrored_cameras_break_the_order(orbit):
    rec = pycolmap.Reconstruction(orbit[0])
    _misplace(rec, MIRRORED)  # each at its mirror position across the axis, as SfM does on symmetric buildings
    rec.transform(random_sim3(4))
    order = flight_order(rec, FLIGHT)
    assert order.applies and order.off == MIRRORED
    assert all(d > 150 for d in order.off_deg.values())
    # the kept model loses them, and nothing it keeps observes them
    order = check_flight_order(rec, FLIGHT)
    assert order.dropped == MIRRORED and rec.num_reg_images() == 21
    assert not set(MIRRORED) & set(camera_centres(rec))


def test_a_missing_image_keeps_the_others_in_place(orbit):
    rec = pycolmap.Reconstruction(orbit[0])
    for im in list(rec.images.values()):
        if im.name == "image-10.jpeg":
            rec.deregister_frame(im.frame_id)
    # the index comes from the whole flight, so the images after the missing one are not shifted
    order = flight_order(rec, FLIGHT)
    assert order.applies and order.off == [] and len(order.consistent) == 26


def test_no_regular_orbit_stands_aside():
    rng = np.random.default_rng(0)
    names = [f"img{i:02d}.jpg" for i in range(12)]
    wander = check_bearings(dict(zip(names, rng.uniform(-180, 180, 12))), names)
    assert not wander.applies and wander.off == []
    hover = check_bearings(dict(zip(names, 30.0 + rng.normal(0, 0.3, 12))), names)
    assert not hover.applies and "no orbit" in hover.reason
    few = check_bearings(dict(zip(names[:4], [0.0, 40.0, 80.0, 120.0])), names)
    assert not few.applies
    # an arc of photos along a facade (herzjesu-p8), however regular, is no orbit to check
    arc = check_bearings(dict(zip(names, 10.0 * np.arange(12) + rng.normal(0, 4, 12))), names)
    assert not arc.applies and "less than once" in arc.reason


def test_the_flight_order_decides_between_disagreeing_models(orbit):
    rec, _ = orbit
    glob, inc = pycolmap.Reconstruction(rec), pycolmap.Reconstruction(rec)
    glob.transform(random_sim3(5))
    wrong = [f"image-{i:02d}.jpeg" for i in (3, 4, 5, 6, 12, 13, 14, 15, 21, 22, 23)]
    _misplace(inc, wrong)  # 16 of 27 agree: below 70%, the global model counted as broken
    kept, check = cross_check(glob, pycolmap.Reconstruction(inc), min_agreement=0.7)
    assert check.kept == "incremental"  # without the flight, as before
    kept, check = cross_check(glob, inc, min_agreement=0.7, flight=FLIGHT)
    assert kept is glob and check.kept == "global" and check.dropped == []
    assert check.flight_consistent == {"global": 27, "incremental": 16}
    # and the other way round: a broken global model still gives way to the incremental one
    glob2 = pycolmap.Reconstruction(rec)
    _misplace(glob2, wrong)
    kept, check = cross_check(glob2, pycolmap.Reconstruction(rec), min_agreement=0.7, flight=FLIGHT)
    assert check.kept == "incremental" and "broken" in check.reason
