"""Quality of a reconstruction: model statistics and, where ground truth exists, pose and geometry errors.

Ground truth (`ground_truth` of `reconstruct_scene`) is a dict:
    {"cameras": {image name: {"cam_from_world": 3x4 [R|t] (OpenCV, metres)}, ...},
     "mesh": path of the scene mesh (PLY, same frame) or None,
     "orbit_radius": metres or None (then taken from the ground-truth camera centres),
     "building_size": metres (largest side of the building's box) or None,
     "building_index": the building's `object` id in the mesh (its `index` in buildings.json) or None}
With a mesh, a size and an index, "geometry" holds accuracy and completeness (`cloud_quality`) of
the sparse and the dense clouds.
"""
from __future__ import annotations

import itertools
import logging
from pathlib import Path

import numpy as np
import open3d as o3d
import pycolmap

from reconstruction.align import camera_centres, estimate_similarity, orbit_radius, sim3_apply

logger = logging.getLogger("skylink")


def model_stats(rec: pycolmap.Reconstruction) -> dict:
    return {
        "registered": int(rec.num_reg_images()),
        "points3D": int(rec.num_points3D()),
        "mean_reprojection_error": float(rec.compute_mean_reprojection_error()),
        "mean_track_length": float(rec.compute_mean_track_length()) if rec.num_points3D() else 0.0,
    }


def gt_rotation_centre(cam: dict) -> tuple[np.ndarray, np.ndarray]:
    """(R cam_from_world, camera centre in world) from a ground-truth camera record."""
    P = np.asarray(cam["cam_from_world"], dtype=np.float64).reshape(3, 4)
    R, t = P[:, :3], P[:, 3]
    return R, -R.T @ t


def relative_rotation_errors(rec: pycolmap.Reconstruction, gt_cameras: dict[str, dict]) -> np.ndarray:
    """Angle (degrees) between estimated and true relative rotations, over all registered image pairs."""
    est = {im.name: np.asarray(im.cam_from_world().rotation.matrix()) for im in rec.images.values() if im.has_pose}
    names = sorted(n for n in est if n in gt_cameras)
    gt = {n: gt_rotation_centre(gt_cameras[n])[0] for n in names}
    errs = []
    for a, b in itertools.combinations(names, 2):
        d = (est[a] @ est[b].T) @ (gt[a] @ gt[b].T).T
        errs.append(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1.0, 1.0))))
    return np.asarray(errs)


class SceneMesh:
    """The ground-truth scene mesh, read once, with one distance query structure for every cloud
    measured against it (the world mesh holds about a million triangles: reading it and building its
    BVH cost more than the queries, so a building's five measurements share them)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.tris, self.obj = read_scene_mesh(self.path)
        if not len(self.tris):
            raise ValueError(f"{path}: no triangles in the ground-truth mesh")
        self._scene = None

    def _raycasting(self) -> o3d.t.geometry.RaycastingScene:
        if self._scene is None:
            self._scene = o3d.t.geometry.RaycastingScene()
            self._scene.add_triangles(
                o3d.core.Tensor(self.tris.reshape(-1, 3).astype(np.float32)),
                o3d.core.Tensor(np.arange(len(self.tris) * 3, dtype=np.uint32).reshape(-1, 3)))
        return self._scene

    def distances(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance of each point to the mesh (open3d RaycastingScene)."""
        if not len(points):
            return np.zeros(0)
        return self._raycasting().compute_distance(o3d.core.Tensor(np.asarray(points, dtype=np.float32))).numpy()

    def closest(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The closest point on the mesh to each point, and the index of its triangle."""
        hit = self._raycasting().compute_closest_points(o3d.core.Tensor(np.asarray(points, dtype=np.float32)))
        return hit["points"].numpy(), hit["primitive_ids"].numpy().astype(np.int64)


def camera_errors(rec: pycolmap.Reconstruction, gt: dict) -> tuple[dict[str, float], dict] | None:
    """Each registered camera's centre error after a similarity to the true centres, as a share of the
    orbit radius; with the alignment's parts (similarity, radius, centres). None below 3 common cameras."""
    cams = gt.get("cameras") or {}
    est = camera_centres(rec)
    names = sorted(n for n in est if n in cams)
    if len(names) < 3:
        return None
    src = np.stack([est[n] for n in names])
    tgt = np.stack([gt_rotation_centre(cams[n])[1] for n in names])
    radius = float(gt.get("orbit_radius") or orbit_radius(tgt))
    sim, _ = estimate_similarity(src, tgt, max_error=0.05 * radius)
    err = np.linalg.norm(sim3_apply(sim, src) - tgt, axis=1) / radius
    return dict(zip(names, err.tolist())), {"sim": sim, "radius": radius, "src": src, "tgt": tgt}


def evaluate_against_ground_truth(rec: pycolmap.Reconstruction, gt: dict, clouds: dict[int, np.ndarray],
                                  dense: dict[int, np.ndarray] | None = None) -> dict:
    """Camera-centre error (relative to the orbit radius) and point-to-mesh distance (relative to the building).

    Errors are measured after a similarity alignment of the camera centres to the ground truth (the
    frame the reconstruction already has may come from noisy priors or from the orbit alone);
    `camera_error_in_frame_*` is the error without that extra alignment.
    """
    cams = gt.get("cameras") or {}
    est = camera_centres(rec)
    out: dict = {"gt_images": len(cams), "gt_common": sum(n in cams for n in est)}
    aligned = camera_errors(rec, gt)
    if aligned is None:
        return out
    per_camera, parts = aligned
    err = np.array(list(per_camera.values()))
    sim, radius, src, tgt = parts["sim"], parts["radius"], parts["src"], parts["tgt"]
    in_frame = np.linalg.norm(src - tgt, axis=1) / radius
    rot = relative_rotation_errors(rec, cams)
    out |= {
        "orbit_radius": radius,
        "camera_error_rel_median": float(np.median(err)),
        "camera_error_rel_max": float(err.max()),
        "camera_error_rel_mean": float(err.mean()),
        "camera_error_in_frame_rel_median": float(np.median(in_frame)),
        "camera_error_in_frame_rel_max": float(in_frame.max()),
        "relative_rotation_error_deg_median": float(np.median(rot)) if len(rot) else None,
        "relative_rotation_error_deg_max": float(rot.max()) if len(rot) else None,
    }
    mesh = gt.get("mesh")
    size = gt.get("building_size")
    if mesh and size and Path(mesh).is_file():
        scene = SceneMesh(Path(mesh))
        per_scale, all_d = {}, []
        for k, xyz in clouds.items():
            d = scene.distances(sim3_apply(sim, xyz)) / float(size) if len(xyz) else np.zeros(0)
            per_scale[str(k)] = float(np.median(d)) if len(d) else None
            all_d.append(d)
        d = np.concatenate(all_d) if all_d else np.zeros(0)
        out |= {
            "building_size": float(size),
            "mesh_distance_rel_median": float(np.median(d)) if len(d) else None,
            "mesh_distance_rel_p90": float(np.percentile(d, 90)) if len(d) else None,
            "mesh_distance_rel_median_per_scale": per_scale,
        }
        index = gt.get("building_index")
        if index is not None:
            # Accuracy / completeness of the union of the scale clouds, sparse and dense side by side.
            geometry = {}
            for name, cl in (("sparse", clouds), ("dense", dense)):
                if cl is not None:
                    xyz = np.concatenate([c for c in cl.values() if len(c)] or [np.zeros((0, 3))])
                    geometry[name] = cloud_quality(sim3_apply(sim, xyz) if len(xyz) else xyz, scene,
                                                   int(index), float(size))
            out["geometry"] = geometry
    return out


# ---------------------------------------------------------------- cloud vs surface (accuracy, completeness)

TAUS = (0.005, 0.01, 0.02)    # fractions of the building's size
FACADE_MAX_NZ = 0.3           # faces whose normal's |z| is below this are facades (near vertical)


def read_scene_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (n x 3 x 3, metres) and per-face object ids of the synthetic world's `meta/scene.ply`."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii")
    nv = int(header.split("element vertex ")[1].split()[0])
    nf = int(header.split("element face ")[1].split()[0])
    if "property int object" not in header:
        raise ValueError(f"{path}: faces carry no `object` id (not a synthetic-world scene mesh)")
    vdt = np.dtype([("xyz", "<f4", 3), ("rgb", "u1", 3)])
    fdt = np.dtype([("n", "u1"), ("v", "<i4", 3), ("object", "<i4")])
    v = np.frombuffer(data, vdt, nv, end)["xyz"]
    f = np.frombuffer(data, fdt, nf, end + nv * vdt.itemsize)
    return v[f["v"]].astype(np.float64), f["object"].astype(np.int64)


def surface_samples(tris: np.ndarray, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` points spread uniformly over the triangles' area, and the index of the triangle of each."""
    rng = np.random.default_rng(seed)
    area = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    face = rng.choice(len(tris), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    flip = r1 + r2 > 1
    r1[flip], r2[flip] = 1 - r1[flip], 1 - r2[flip]
    t = tris[face]
    return t[:, 0] + r1[:, None] * (t[:, 1] - t[:, 0]) + r2[:, None] * (t[:, 2] - t[:, 0]), face


def building_samples(scene: SceneMesh, building_index: int, n: int = 20000,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` points spread over the building's faces (the samples completeness is measured on), the unit
    normal of each one's face, and which of them lie on facades (near-vertical faces)."""
    mine = scene.tris[scene.obj == building_index]
    if not len(mine):
        raise ValueError(f"{scene.path}: no faces of building index {building_index}")
    normals = np.cross(mine[:, 1] - mine[:, 0], mine[:, 2] - mine[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    samples, face = surface_samples(mine, n, seed)
    return samples, normals[face], np.abs(normals[face, 2]) < FACADE_MAX_NZ


def cloud_quality(xyz: np.ndarray, mesh: Path | SceneMesh, building_index: int, building_size: float,
                  taus: tuple[float, ...] = TAUS, n_samples: int = 20000, seed: int = 0) -> dict:
    """Accuracy and completeness of a cloud (metres, ground-truth frame) at each tau (x building size).

    accuracy: share of cloud points within tau of the scene mesh; completeness: share of points
    sampled on the target building's faces within tau of the cloud, for all its faces and for its
    facades alone (near-vertical faces).
    """
    from scipy.spatial import cKDTree

    scene = mesh if isinstance(mesh, SceneMesh) else SceneMesh(mesh)
    samples, _, facade = building_samples(scene, building_index, n_samples, seed)
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    out: dict = {"points": int(len(xyz)), "building_size": float(building_size), "surface_samples": int(n_samples),
                 "facade_share_of_surface": round(float(facade.mean()), 4),
                 "accuracy": {}, "completeness": {}, "completeness_facades": {}}
    if len(xyz):
        d_acc = scene.distances(xyz)
        d_comp, _ = cKDTree(xyz).query(samples, k=1, workers=-1)
    else:
        d_acc, d_comp = np.zeros(0), np.full(len(samples), np.inf)
    for tau in taus:
        lim = tau * building_size
        key = f"{tau:g}"
        out["accuracy"][key] = round(float((d_acc <= lim).mean()), 4) if len(d_acc) else None
        out["completeness"][key] = round(float((d_comp <= lim).mean()), 4)
        out["completeness_facades"][key] = round(float((d_comp[facade] <= lim).mean()), 4) if facade.any() else None
    return out
