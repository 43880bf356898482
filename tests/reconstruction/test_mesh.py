"""The viewing mesh: screened Poisson over oriented dense clouds lies on the surface they sample."""
from __future__ import annotations

import numpy as np
import open3d as o3d

from reconstruction.mesh import poisson_mesh


def _box_cloud(rng: np.random.Generator, n: int = 6000) -> o3d.geometry.PointCloud:
    """Points on the roof and four walls of a 2 x 2 x 1 box standing on z = 0 (no floor: the ground
    hides it), normals pointing out, as the dense step's clouds are oriented towards the cameras."""
    faces = [(2, 1.0, np.array([0, 0, 1.0]))] + [(a, s, np.eye(3)[a] * s) for a in (0, 1) for s in (-1.0, 1.0)]
    pts, nrm = [], []
    for axis, side, normal in faces:
        p = rng.uniform([-1, -1, 0], [1, 1, 1], (n // 5, 3))
        p[:, axis] = side
        pts.append(p)
        nrm.append(np.broadcast_to(normal, p.shape))
    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.concatenate(pts)))
    pcd.normals = o3d.utility.Vector3dVector(np.concatenate(nrm))
    pcd.colors = o3d.utility.Vector3dVector(np.full((len(pcd.points), 3), 0.5))
    return pcd


def _distance_to_box(v: np.ndarray) -> np.ndarray:
    """Distance of points to the nearest of the box's five sampled faces."""
    inside = np.clip(v, [-1, -1, 0], [1, 1, 1])
    d = [np.abs(v[:, 2] - 1) + np.linalg.norm(v[:, :2] - inside[:, :2], axis=1)]
    for a in (0, 1):
        other = [1 - a, 2]
        for s in (-1.0, 1.0):
            d.append(np.abs(v[:, a] - s) + np.linalg.norm(v[:, other] - inside[:, other], axis=1))
    return np.min(d, axis=0)


def test_poisson_mesh_lies_on_the_sampled_surface():
    rng = np.random.default_rng(0)
    cloud = _box_cloud(rng)
    half = o3d.geometry.PointCloud(cloud)   # two scale clouds of the same building are merged
    mesh = poisson_mesh([cloud, half], depth=6, threads=1)
    v = np.asarray(mesh.vertices)
    assert len(mesh.triangles) > 500 and mesh.has_vertex_colors() and mesh.has_vertex_normals()
    assert np.median(_distance_to_box(v)) < 0.03, np.median(_distance_to_box(v))
    # no bubble beyond the points: Poisson's closing surface is cropped away
    assert (v >= [-1.05, -1.05, -0.03]).all() and (v <= [1.05, 1.05, 1.03]).all()
    # the roof is covered: a ray straight down through its middle hits the mesh at z = 1
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    t = scene.cast_rays(o3d.core.Tensor([[0.3, -0.2, 3.0, 0, 0, -1]], dtype=o3d.core.float32))["t_hit"].numpy()
    assert abs(3.0 - t[0] - 1.0) < 0.05


def test_too_few_points_give_an_empty_mesh():
    pcd = _box_cloud(np.random.default_rng(1), n=50)
    assert len(poisson_mesh([pcd], depth=6).triangles) == 0
    assert len(poisson_mesh([], depth=6).triangles) == 0
