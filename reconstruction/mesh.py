"""A surface mesh of one building for viewing: screened Poisson over its dense clouds (open3d).

The dense clouds of all altitude scales together carry oriented normals (from the depth maps, facing
the cameras that saw them), which is what Poisson reconstruction needs. Poisson closes every surface,
so the vertices it placed far from any point (lowest density) are trimmed and the mesh is cropped
to the clouds' bounding box (with a small margin): holes the images never saw stay holes instead of becoming bubbles.
"""
from __future__ import annotations

import numpy as np
import open3d as o3d

MESH = "mesh.ply"
CROP_MARGIN = 0.02   # of the clouds' extent per axis


def poisson_mesh(clouds: list[o3d.geometry.PointCloud], depth: int = 8, trim: float = 0.1,
                 threads: int = -1) -> o3d.geometry.TriangleMesh:
    """The clouds (with normals) as one coloured triangle mesh; empty when they hold too few points.

    `depth` is the octree depth (resolution 2^depth over the clouds' extent); `trim` the share of
    vertices, lowest Poisson density first, that are removed.
    """
    merged = o3d.geometry.PointCloud()
    for c in clouds:
        merged += c
    if len(merged.points) < 100 or not merged.has_normals():
        return o3d.geometry.TriangleMesh()
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        mesh, density = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(merged, depth=depth, n_threads=threads)
    density = np.asarray(density)
    if trim > 0 and len(density):
        mesh.remove_vertices_by_mask(density < np.quantile(density, trim))
    box = merged.get_axis_aligned_bounding_box()
    margin = CROP_MARGIN * box.get_extent()        # the surface through the outermost points (a flat roof) stays
    mesh = mesh.crop(o3d.geometry.AxisAlignedBoundingBox(box.min_bound - margin, box.max_bound + margin))
    mesh.remove_unreferenced_vertices()
    mesh.compute_vertex_normals()
    return mesh
