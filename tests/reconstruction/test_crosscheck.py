"""The global mapper's model, checked against the incremental one: broken models and disputed cameras."""
from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from reconstruction.align import camera_centres
from reconstruction.crosscheck import camera_disagreement, cross_check
from tests.reconstruction.test_align import look_at, orbit_reconstruction, random_sim3


def _misplace(rec: pycolmap.Reconstruction, names: list[str]) -> None:
    """Put each named camera at its mirror position on the orbit, looking at the building (a symmetric
    building's classic wrong registration)."""
    for im in rec.images.values():
        if im.name in names:
            C = np.asarray(im.projection_center()) * [-1.0, -1.0, 1.0]
            rec.frames[im.frame_id].rig_from_world = pycolmap.Rigid3d(look_at(C, np.array([0, 0, 4.0])))


@pytest.fixture(scope="module")
def orbit():
    return orbit_reconstruction(n_images=27)


def test_agreeing_models_keep_global_without_the_disputed_cameras(orbit):
    rec, _ = orbit
    glob, inc = pycolmap.Reconstruction(rec), pycolmap.Reconstruction(rec)
    glob.transform(random_sim3(1))  # every model has its own frame
    bad = ["image-05.jpeg", "image-14.jpeg"]
    _misplace(glob, bad)
    dist = camera_disagreement(glob, inc)
    assert sorted(n for n, d in dist.items() if d > 0.05) == bad
    assert max(d for n, d in dist.items() if n not in bad) < 1e-6
    kept, check = cross_check(glob, inc)
    assert kept is glob and check.kept == "global" and check.dropped == bad
    assert check.common == 27 and check.agreeing == 25
    assert kept.num_reg_images() == 25 and not set(bad) & set(camera_centres(kept))
    for p in kept.points3D.values():  # no observation of a dropped image survives
        assert all(kept.images[e.image_id].has_pose for e in p.track.elements)


def test_broken_global_model_falls_back_to_incremental(orbit):
    rec, _ = orbit
    glob, inc = pycolmap.Reconstruction(rec), pycolmap.Reconstruction(rec)
    _misplace(glob, [f"image-{i:02d}.jpeg" for i in range(1, 12)])  # 11 of 27 disagree: 59% agree
    kept, check = cross_check(glob, inc, min_agreement=0.7)
    assert kept is inc and check.kept == "incremental" and check.dropped == []
    assert check.agreeing == 16 and "broken" in check.reason
    assert inc.num_reg_images() == 27


def test_a_missing_model_is_replaced_by_the_other(orbit):
    rec, _ = orbit
    kept, check = cross_check(None, rec)
    assert kept is rec and check.kept == "incremental" and "no model" in check.reason
    kept, check = cross_check(rec, None)
    assert kept is rec and check.kept == "global" and check.reason.startswith("unchecked")
    with pytest.raises(ValueError):
        cross_check(None, None)
