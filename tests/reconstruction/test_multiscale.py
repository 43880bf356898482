"""Altitude groups, per-scale point selection from tracks, cleaning and PLY output."""
from __future__ import annotations

import numpy as np
import open3d as o3d

from reconstruction.multiscale import clean_cloud, default_groups, scale_clouds, scale_point_ids, write_clouds
from tests.reconstruction.test_align import orbit_reconstruction


def test_default_groups_university_names_and_other_counts():
    names = [f"image-{i:02d}.jpeg" for i in range(1, 55)]
    g = default_groups(names)
    assert [g[f"image-{i:02d}.jpeg"] for i in (1, 18, 19, 36, 37, 54)] == [1, 1, 2, 2, 3, 3]
    # A missing image must not shift the others into a different group.
    g = default_groups([n for n in names if n != "image-10.jpeg"])
    assert g["image-19.jpeg"] == 2 and g["image-37.jpeg"] == 3
    g = default_groups([f"DJI_{i:04d}.JPG" for i in range(30)])
    assert [sum(v == k for v in g.values()) for k in (1, 2, 3)] == [10, 10, 10]
    assert g["DJI_0000.JPG"] == 1 and g["DJI_0029.JPG"] == 3


def test_scale_points_follow_the_tracks():
    rec, _ = orbit_reconstruction(n_images=54)
    groups = default_groups([im.name for im in rec.images.values()])
    ids = scale_point_ids(rec, groups, 3)
    assert set(ids) == {1, 2, 3}
    group_of = {im.image_id: groups[im.name] for im in rec.images.values()}
    for k, pids in ids.items():
        assert pids
        for pid in pids[:200]:
            assert k in {group_of[el.image_id] for el in rec.points3D[pid].track.elements}
    # High cameras (group 1) see the roof; every point seen by some group is in some scale.
    roof = {pid for pid, p in rec.points3D.items() if abs(p.xyz[2] - 12) < 1e-9}
    assert roof & set(ids[1])
    assert set().union(*map(set, ids.values())) == set(rec.points3D.keys())


def test_clean_cloud_removes_outliers_and_downsamples():
    rng = np.random.default_rng(0)
    xyz = np.vstack([rng.uniform(0, 1, (2000, 3)), [[50.0, 50.0, 50.0]]])
    rgb = np.full((len(xyz), 3), 128)
    pcd = clean_cloud(xyz, rgb, nb_neighbors=20, std_ratio=2.0, voxel=0.0)
    assert np.asarray(pcd.points).max() < 1.5 and len(pcd.points) > 1800
    small = clean_cloud(xyz, rgb, nb_neighbors=20, std_ratio=2.0, voxel=0.25)
    assert len(small.points) <= 125 and np.allclose(np.asarray(small.colors), 128 / 255)


def test_write_clouds_including_an_empty_scale(tmp_path):
    rec, _ = orbit_reconstruction(n_images=54)
    groups = {im.name: 1 if im.image_id <= 27 else 2 for im in rec.images.values()}  # nothing in group 3
    clouds = scale_clouds(rec, groups, 3, nb_neighbors=20, std_ratio=2.0, voxel=0.5)
    counts = write_clouds(clouds, tmp_path)
    assert counts[1] > 100 and counts[2] > 100 and counts[3] == 0
    assert len(o3d.io.read_point_cloud(str(tmp_path / "scale1.ply")).points) == counts[1]
    assert (tmp_path / "scale3.ply").read_text().startswith("ply")
