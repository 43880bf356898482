"""Alignment into a metric gravity-up frame: robust similarity to priors, orbit fallback, GPS -> ENU."""
from __future__ import annotations

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation

from reconstruction.align import align_by_orbit, align_to_priors, camera_centres, estimate_similarity, orbit_radius, sim3_apply
from reconstruction.gps import wgs84_to_enu


def look_at(C: np.ndarray, target: np.ndarray) -> np.ndarray:
    """cam_from_world 3x4 of a level camera at C looking at target (OpenCV axes)."""
    z = (target - C) / np.linalg.norm(target - C)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    R = np.stack([x, np.cross(z, x), z])
    return np.hstack([R, (-R @ C)[:, None]])


def orbit_reconstruction(n_images: int = 54, radius: float = 30.0, seed: int = 0) -> tuple[pycolmap.Reconstruction, dict]:
    """A perfect reconstruction of a descending spiral (3 turns, 60 -> 15 m) around a 10 x 16 x 12 m box.

    Points lie on the box's faces and the ground; each is observed, with its exact projection, by
    every camera that sees it in front within the image. Returns it and the true camera centres.
    """
    rng = np.random.default_rng(seed)
    W, H, f = 320, 240, 260.0
    cam = pycolmap.Camera(model="PINHOLE", width=W, height=H, params=[f, f, W / 2, H / 2])
    cam.camera_id = 1
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(cam)
    # points: box faces (x in [-5,5], y in [-8,8], z in [0,12]) and ground ring
    u = rng.uniform(size=(1500, 2))
    face = rng.integers(0, 5, 1500)
    box = np.stack([
        np.where(face == 0, -5, np.where(face == 1, 5, -5 + 10 * u[:, 0])),
        np.where(face == 2, -8, np.where(face == 3, 8, -8 + 16 * u[:, 1])),
        np.where(face == 4, 12, 12 * u[:, 1]),
    ], 1).astype(float)
    box[face == 0, 1] = -8 + 16 * u[face == 0, 0]
    box[face == 1, 1] = -8 + 16 * u[face == 1, 0]
    ground = np.c_[rng.uniform(-25, 25, (800, 2)), np.zeros(800)]
    pts = np.vstack([box, ground])
    centres, obs = {}, {}
    for i in range(n_images):
        a = 2 * np.pi * 3 * i / n_images
        C = np.array([radius * np.cos(a), radius * np.sin(a), 60 - 45 * i / (n_images - 1)])
        P = look_at(C, np.array([0, 0, 4.0]))
        Xc = pts @ P[:, :3].T + P[:, 3]
        uv = Xc[:, :2] / Xc[:, 2:3] * f + [W / 2, H / 2]
        vis = (Xc[:, 2] > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        name = f"image-{i + 1:02d}.jpeg"
        im = pycolmap.Image(name=name, keypoints=uv[vis], camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(im, pycolmap.Rigid3d(P))
        obs[i + 1] = np.flatnonzero(vis)
        centres[name] = C
    for j, X in enumerate(pts):
        track = pycolmap.Track()
        for image_id, idx in obs.items():
            k = np.searchsorted(idx, j)
            if k < len(idx) and idx[k] == j:
                track.add_element(image_id, int(k))
        if track.length() >= 2:
            rec.add_point3D(X, track, np.array([200, 100, 50], np.uint8))
    return rec, centres


def random_sim3(seed: int) -> pycolmap.Sim3d:
    rng = np.random.default_rng(seed)
    R = Rotation.random(random_state=seed).as_matrix()
    return pycolmap.Sim3d(float(rng.uniform(0.05, 0.3)), pycolmap.Rotation3d(R), rng.normal(size=3) * 5)


def test_estimate_similarity_rejects_outliers():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(30, 3)) * 10
    true = random_sim3(2)
    tgt = sim3_apply(true, src)
    tgt[:5] += rng.normal(size=(5, 3)) * 50  # five wild priors (e.g. GPS glitches)
    sim, inliers = estimate_similarity(src, tgt, max_error=0.5)
    assert inliers[5:].all() and not inliers[:5].any()
    assert abs(sim.scale - true.scale) < 1e-6
    assert np.allclose(np.asarray(sim.matrix()), np.asarray(true.matrix()), atol=1e-6)


def test_align_to_priors_recovers_metric_frame():
    rec, centres = orbit_reconstruction(n_images=24)
    rec.transform(random_sim3(3))  # an SfM model lives in an arbitrary frame
    rng = np.random.default_rng(4)
    priors = {n: c + rng.normal(size=3) * 0.3 for n, c in centres.items()}  # GPS-like noise
    priors["image-05.jpeg"] = priors["image-05.jpeg"] + [40.0, 0, 0]  # one outlier
    a = align_to_priors(rec, priors, max_error_fraction=0.05)
    assert a is not None and a.method == "priors"
    assert a.n_inliers == 23 and a.n_common == 24
    assert 0.2 < a.residual_rms < 0.8  # the prior noise (0.3 m per axis), not the outlier
    est = camera_centres(rec)
    err = np.array([np.linalg.norm(est[n] - centres[n]) for n in centres])
    assert np.median(err) < 0.5
    assert align_to_priors(rec, {"image-01.jpeg": np.zeros(3)}, 0.05) is None  # < 3 common images


def test_align_by_orbit_gives_up_and_unit_radius():
    rec, centres = orbit_reconstruction(n_images=36)
    rec.transform(random_sim3(5))
    a = align_by_orbit(rec)
    assert a.method == "orbit" and a.unit == "orbit radius"
    est = camera_centres(rec)
    names = sorted(centres)
    C = np.stack([est[n] for n in names])
    true = np.stack([centres[n] for n in names])
    assert abs(orbit_radius(C) - 1.0) < 1e-6
    # Heights above the ground must follow the true spiral (up recovered, scale = 1 / radius).
    assert np.allclose(C[:, 2] - C[:, 2].min(), (true[:, 2] - true[:, 2].min()) / 30.0, atol=0.01)
    ground = np.stack([p.xyz for p in rec.points3D.values()])[:, 2]
    assert abs(np.percentile(ground, 2)) < 1e-6 and np.median(ground) > -0.01


def test_wgs84_to_enu_small_offsets():
    origin = np.array([46.84, -91.99, 200.0])
    pts = np.array([[46.84 + 1e-4, -91.99, 200.0], [46.84, -91.99 + 1e-4, 210.0]])
    enu = wgs84_to_enu(pts, origin)
    assert abs(enu[0, 1] - 11.12) < 0.05 and abs(enu[0, 0]) < 0.01  # 1e-4 deg north ~ 11.1 m
    assert abs(enu[1, 0] - 11.12 * np.cos(np.radians(46.84))) < 0.05 and abs(enu[1, 2] - 10.0) < 0.01
