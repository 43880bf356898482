"""Per-building rendering: the view set, DSM, height above ground, normals and the files written."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reconstruction.config import RenderConfig
from reconstruction.priors import estimate_ground, normals_from_depth
from reconstruction.render import render_building
from reconstruction.splat import splat_points
from reconstruction.views import look_at, view_set

BOX = (16.0, 10.0, 12.0)  # extent x, y and height (metres)
GROUND_Z = 3.0            # ground not at z = 0, as in a real aligned reconstruction


def box_scene(out: Path, n: int = 30000, seed: int = 0, extent: float = 30.0) -> Path:
    """A coloured box building on a ground square, sampled into scale1..3.ply (fewer points per scale)."""
    import open3d as o3d
    import trimesh

    rng = np.random.default_rng(seed)
    sx, sy, h = BOX
    box = trimesh.creation.box(extents=(sx, sy, h))
    box.apply_translation((0.0, 0.0, GROUND_Z + h / 2))
    pb, face = trimesh.sample.sample_surface(box, n, seed=seed)
    normal = box.face_normals[face]
    cb = np.where(normal[:, 2:3] > 0.5, [0.8, 0.2, 0.2], [0.9, 0.85, 0.6])
    g = rng.uniform(-extent, extent, (n, 2))
    g = g[~((np.abs(g[:, 0]) < sx / 2) & (np.abs(g[:, 1]) < sy / 2))]
    pg = np.c_[g, np.full(len(g), GROUND_Z)]
    xyz = np.r_[pb, pg]
    rgb = np.r_[cb, np.tile([0.3, 0.6, 0.3], (len(pg), 1))]
    out.mkdir(parents=True, exist_ok=True)
    for k, share in zip((1, 2, 3), (1.0, 0.6, 0.3)):
        keep = rng.random(len(xyz)) < share
        pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[keep]))
        pc.colors = o3d.utility.Vector3dVector(rgb[keep])
        o3d.io.write_point_cloud(str(out / f"scale{k}.ply"), pc)
    (out / "quality.json").write_text(json.dumps({"registered": 54, "total": 54}))
    return out


def add_orbit_model(scene: Path, n: int = 18, radius: float = 40.0, axis=(0.0, 0.0), look_z: float = 8.0,
                    noise: float = 0.0, seed: int = 0) -> Path:
    """A COLMAP model in `scene/sparse` of n cameras on a descending orbit around `axis`, looking at it."""
    import pycolmap

    rng = np.random.default_rng(seed)
    rec = pycolmap.Reconstruction()
    rec.add_camera_with_trivial_rig(pycolmap.Camera(model="PINHOLE", width=64, height=48,
                                                    params=[50.0, 50.0, 32.0, 24.0], camera_id=1))
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = np.array([axis[0] + radius * np.cos(a), axis[1] + radius * np.sin(a), GROUND_Z + 30.0 - 20.0 * i / n])
        eye[:2] += rng.normal(0, noise, 2)
        T = look_at(eye, np.array([axis[0], axis[1], look_z]))
        im = pycolmap.Image(name=f"image-{i * (54 // n) + 1:02d}.jpeg", camera_id=1, image_id=i + 1)
        rec.add_image_with_trivial_frame(im, pycolmap.Rigid3d(pycolmap.Rotation3d(T[:, :3]), T[:, 3]))
    (scene / "sparse").mkdir(parents=True, exist_ok=True)
    rec.write_binary(str(scene / "sparse"))
    return scene


def box_triangles() -> np.ndarray:
    """The true box building's triangles [F,3,3] (for silhouettes)."""
    import trimesh

    sx, sy, h = BOX
    box = trimesh.creation.box(extents=(sx, sy, h))
    box.apply_translation((0.0, 0.0, GROUND_Z + h / 2))
    return np.asarray(box.triangles, dtype=np.float64)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Path, dict, RenderConfig]:
    root = tmp_path_factory.mktemp("render")
    scene = add_orbit_model(box_scene(root / "scene"))
    cfg = RenderConfig(n_views=6, image_size=64, device="cpu")
    summary = render_building(scene, root / "out", cfg)
    return root / "out", summary, cfg


def test_view_set_layout_and_aim():
    center = np.array([5.0, -2.0, 7.0])
    cams = view_set(center, 20.0, n_views=10, image_size=64)
    assert [c.kind for c in cams] == ["nadir"] + ["oblique"] * 5 + ["low"] * 4
    assert [c.name for c in cams] == [f"view{i:02d}" for i in range(10)]
    assert cams[0].model == "ORTHO" and all(c.model == "PINHOLE" for c in cams[1:])
    for c in cams[1:]:
        # The scene centre projects to the image centre, in front of the camera.
        p = c.K @ (c.cam_from_world[:, :3] @ center + c.cam_from_world[:, 3])
        assert p[2] > 0 and p[0] / p[2] == pytest.approx(32.0) and p[1] / p[2] == pytest.approx(32.0)
    heights = {k: np.mean([c.center[2] for c in cams if c.kind == k]) for k in ("oblique", "low")}
    assert heights["oblique"] > heights["low"] > center[2]
    # The nadir view is north-up: north (+y) is up in the image, east (+x) to the right.
    nadir = cams[0]
    def pix(x):  # orthographic: K acts on camera (x, y, 1)
        xc = nadir.cam_from_world[:, :3] @ x + nadir.cam_from_world[:, 3]
        return (nadir.K @ np.array([xc[0], xc[1], 1.0]))[:2]
    assert pix(center + [0, 10, 0])[1] < pix(center)[1] and pix(center + [10, 0, 0])[0] > pix(center)[0]
    # 20 m radius over 64 px: the nadir view spans exactly the square [centre +- radius].
    assert pix(center + [-20, 20, 0]) == pytest.approx([0.0, 0.0])
    assert len(view_set(center, 20.0, n_views=1)) == 1
    with pytest.raises(ValueError, match="radius"):
        view_set(center, 0.0)


def test_files_and_dtypes(rendered):
    out, summary, cfg = rendered
    assert set(summary["scales"]) == {"1", "2", "3"}
    for k in (1, 2, 3):
        d = out / f"scale{k}"
        meta = json.loads((d / "cameras.json").read_text())
        assert sorted(meta["views"]) == [f"view{i:02d}" for i in range(cfg.n_views)]
        for name in meta["views"]:
            img = cv2.imread(str(d / f"{name}_color.png"))
            assert img.shape == (64, 64, 3) and img.dtype == np.uint8
            assert cv2.imread(str(d / f"{name}_normals.png")).shape == (64, 64, 3)
            for kind in ("depth", "height"):
                a = np.load(d / f"{name}_{kind}.npy")
                assert a.shape == (64, 64) and a.dtype == np.float16
        assert np.load(d / "dsm.npy").dtype == np.float16 and (d / "dsm.png").exists()
    # Fewer points at the coarser scales, all rendered into the same cameras.
    pts = [summary["scales"][str(k)]["points"] for k in (1, 2, 3)]
    assert pts[0] > pts[1] > pts[2] > 0
    cams = [json.loads((out / f"scale{k}" / "cameras.json").read_text())["views"] for k in (1, 2, 3)]
    assert cams[0] == cams[1] == cams[2]


def test_dsm_of_a_box_equals_its_height(rendered):
    out, summary, _ = rendered
    assert summary["ground_z"] == pytest.approx(GROUND_Z, abs=0.01)
    meta = json.loads((out / "scale1" / "cameras.json").read_text())["dsm"]
    dsm = np.load(out / "scale1" / "dsm.npy").astype(np.float32)
    # Cell centres in world x, y from the DSM grid written beside it.
    rows, cols = np.mgrid[0:dsm.shape[0], 0:dsm.shape[1]]
    x = meta["origin_x"] + (cols + 0.5) * meta["gsd"]
    y = meta["origin_y"] - (rows + 0.5) * meta["gsd"]
    sx, sy, h = BOX
    inside = (np.abs(x) < sx / 2 - 1.0) & (np.abs(y) < sy / 2 - 1.0)
    outside = (np.abs(x) > sx / 2 + 1.0) | (np.abs(y) > sy / 2 + 1.0)
    assert inside.sum() > 50 and outside.sum() > 50
    assert np.median(dsm[inside]) == pytest.approx(h, abs=0.05)
    assert np.mean(np.abs(dsm[inside] - h) < 0.1) > 0.97
    assert np.median(dsm[outside]) == pytest.approx(0.0, abs=0.05)
    assert summary["scales"]["1"]["dsm_max_height"] == pytest.approx(h, abs=0.05)


def test_height_above_ground_in_views(rendered):
    out, _, _ = rendered
    for name in ("view00", "view01", "view05"):
        height = np.load(out / "scale1" / f"{name}_height.npy").astype(np.float32)
        depth = np.load(out / "scale1" / f"{name}_depth.npy").astype(np.float32)
        valid = depth > 0
        assert valid.mean() > 0.3
        assert height[valid].min() > -0.05 and height[valid].max() == pytest.approx(BOX[2], abs=0.05)
        assert np.all(height[~valid] == 0)


def test_normals_of_a_plane_point_up_and_of_a_wall_sideways():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40000, 2, generator=g) * 40 - 20
    plane = torch.cat([xy, torch.full((40000, 1), 2.5)], 1)
    cams = view_set(np.array([0.0, 0.0, 2.5]), 10.0, n_views=5, image_size=64)
    for ortho in (True, False):
        sel = [c for c in cams if c.orthographic == ortho]
        K = torch.tensor(np.stack([c.K for c in sel]), dtype=torch.float32)
        T = torch.tensor(np.stack([c.cam_from_world for c in sel]), dtype=torch.float32)
        r = splat_points(plane, torch.ones(len(plane), 3), K, T, 64, 64, 2, orthographic=ortho)
        n = normals_from_depth(r.depth, K, T, orthographic=ortho)
        ok = n.norm(dim=-1) > 0
        assert ok.float().mean() > 0.8 * r.mask.float().mean()
        assert torch.median(n[ok][:, 2]) > 0.99 and (n[ok][:, 2] > 0.9).float().mean() > 0.95
    # A wall facing south (-y), seen from the south: normals point to -y.
    xz = torch.rand(40000, 2, generator=g) * torch.tensor([20.0, 10.0])
    wall = torch.stack([xz[:, 0] - 10, torch.zeros(40000), xz[:, 1]], 1)
    cam = view_set(np.array([0.0, 0.0, 5.0]), 8.0, n_views=2, image_size=64, oblique_elevation_deg=10)[1]
    K = torch.tensor(cam.K, dtype=torch.float32)
    T = torch.tensor(cam.cam_from_world, dtype=torch.float32)
    r = splat_points(wall, torch.ones(40000, 3), K, T, 64, 64, 2)
    n = normals_from_depth(r.depth, K.unsqueeze(0), T.unsqueeze(0))
    ok = n.norm(dim=-1) > 0
    assert torch.median(n[ok][:, 1]) < -0.99


def test_ground_estimate_ignores_stray_low_points():
    z = np.r_[np.full(1000, 4.0), np.linspace(4, 30, 2000), [-50.0, -40.0]]
    assert estimate_ground(z) == pytest.approx(4.0, abs=0.5)


def test_bad_input_names_the_file(tmp_path):
    cfg = RenderConfig(n_views=2, image_size=32, device="cpu")
    with pytest.raises(FileNotFoundError, match="scale1.ply"):
        render_building(tmp_path, tmp_path / "out", cfg)
    for k in (1, 2, 3):
        (tmp_path / f"scale{k}.ply").write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match=r"scale1\.ply: not a PLY file"):
        render_building(tmp_path, tmp_path / "out", cfg)


def test_empty_scale_renders_empty_views(tmp_path):
    scene = box_scene(tmp_path / "scene", n=2000)
    # The reconstruct stage writes an empty ascii PLY for a scale whose images saw no points.
    (scene / "scale3.ply").write_text("ply\nformat ascii 1.0\nelement vertex 0\nproperty double x\nproperty double y\n"
                                      "property double z\nend_header\n")
    summary = render_building(scene, tmp_path / "out", RenderConfig(n_views=2, image_size=32, device="cpu"))
    assert summary["scales"]["3"] == {"points": 0, "coverage": 0.0, "dsm_coverage": 0.0, "dsm_max_height": 0.0}
    assert summary["scales"]["1"]["coverage"] > 0.3
    assert not np.load(tmp_path / "out" / "scale3" / "view01_depth.npy").any()


def test_plane_normal_matches_eigh_on_planar_covariances():
    from reconstruction.priors import plane_normal

    g = torch.Generator().manual_seed(3)
    # Covariances of flat patches: two large axes, one small, in random orientations.
    Q, _ = torch.linalg.qr(torch.randn(500, 3, 3, generator=g))
    lam = torch.stack([torch.rand(500, generator=g) + 0.5, torch.rand(500, generator=g) + 0.2,
                       torch.rand(500, generator=g) * 0.01], -1)
    C = Q @ torch.diag_embed(lam) @ Q.transpose(1, 2)
    n, lam2 = plane_normal(C[:, 0, 0], C[:, 1, 1], C[:, 2, 2], C[:, 0, 1], C[:, 0, 2], C[:, 1, 2])
    ref = torch.linalg.eigh(C).eigenvectors[..., 0]
    assert torch.all((n * ref).sum(-1).abs() > 0.999)
    # The middle eigenvalue is estimated within a factor 2 (l1 l2 / trace), enough for a threshold.
    mid = torch.minimum(lam[:, 0], lam[:, 1])
    assert torch.all((lam2 > 0.45 * mid) & (lam2 < 1.01 * mid))


# ---------------------------------------------------------------- framing on the target building

def test_orbit_axis_from_noisy_camera_centres():
    from reconstruction.framing import centres_and_axes, estimate_orbit

    rng = np.random.default_rng(4)
    axis = np.array([5.0, -3.0])
    a = np.linspace(0, 2 * np.pi, 30, endpoint=False) + rng.normal(0, 0.05, 30)
    eyes = np.c_[axis + 40 * np.c_[np.cos(a), np.sin(a)] + rng.normal(0, 1.0, (30, 2)), np.linspace(40, 15, 30)]
    cams = [{"cam_from_world": look_at(e, np.r_[axis, 8.0])} for e in eyes]
    orbit = estimate_orbit(*centres_and_axes(cams))
    assert orbit.source == "circle" and np.linalg.norm(orbit.axis - axis) < 1.0
    assert orbit.radius == pytest.approx(40.0, abs=1.0)
    # A quarter of a turn is too short an arc for a circle: the optical axes' convergence takes over.
    quarter = [c for c, t in zip(cams, a) if t < np.pi / 2]
    orbit = estimate_orbit(*centres_and_axes(quarter))
    assert orbit.source == "rays" and np.linalg.norm(orbit.axis - axis) < 1.5
    # A given position prior wins.
    orbit = estimate_orbit(*centres_and_axes(cams), prior=np.array([4.0, -2.0]))
    assert orbit.source == "prior" and np.allclose(orbit.axis, [4.0, -2.0])
    assert estimate_orbit(np.zeros((0, 3)), np.zeros((0, 3))) is None


def test_structure_near_the_axis_leaves_the_neighbour_out(tmp_path):
    from reconstruction.framing import structure_near_axis
    from reconstruction.render import load_points

    scene = box_scene(tmp_path / "scene", n=20000)
    xyz, _ = load_points(scene / "scale1.ply")
    # A taller neighbour 25 m east, across open ground.
    rng = np.random.default_rng(1)
    nb = np.c_[rng.uniform(22, 28, 4000), rng.uniform(-4, 4, 4000), rng.uniform(GROUND_Z, GROUND_Z + 20, 4000)]
    s = structure_near_axis(np.r_[xyz, nb], np.array([0.3, -0.2]), GROUND_Z, search_radius=30.0)
    sx, sy, h = BOX
    assert s.top == pytest.approx(GROUND_Z + h, abs=0.2) and s.ground == GROUND_Z
    lo, hi = s.footprint.min(0), s.footprint.max(0)
    assert np.allclose(lo, [-sx / 2, -sy / 2], atol=1.5) and np.allclose(hi, [sx / 2, sy / 2], atol=1.5)


def test_framed_views_cover_the_true_silhouette_and_fill_the_frame(rendered):
    from reconstruction.silhouette import measure, silhouettes
    from reconstruction.views import ViewCamera

    out, summary, cfg = rendered
    meta = json.loads((out / "scale1" / "cameras.json").read_text())
    assert meta["orbit"]["source"] == "circle" and np.allclose(meta["orbit"]["axis"], [0, 0], atol=0.5)
    cams = [ViewCamera.from_json(n, d) for n, d in sorted(meta["views"].items())]
    m = measure(out, [1], cams, box_triangles())
    for name, v in m["scales"]["1"]["views"].items():
        assert v["coverage"] >= 0.95, (name, v)
        assert v["in_frame"] == 1.0 and v["fill"] > 0.3, (name, v)
    assert m["fill_median"] > 0.35
    # The low ring looks horizontally at the building's mid-height.
    for c in cams:
        if c.kind == "low":
            assert c.center[2] == pytest.approx(GROUND_Z + BOX[2] / 2, abs=0.3)
            assert abs(c.cam_from_world[2, 2]) < 1e-6
    # The building spans most of each view along one axis at least, and is centred.
    for sil in silhouettes(box_triangles(), cams, 0):
        rows, cols = np.nonzero(sil)
        span = max(np.ptp(rows), np.ptp(cols)) + 1
        assert span >= 0.8 * cfg.image_size
        assert abs(0.5 * (rows.min() + rows.max() + 1) - cfg.image_size / 2) < 0.1 * cfg.image_size
