"""Triangle mesh of a campus layout, with per-triangle material, object id and texture coordinates.

Triangles are kept unshared ((T, 3, 3) vertices) so every triangle carries its own UVs; the
renderer looks textures up with the primitive id and barycentrics of each ray hit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from shapely import affinity
from shapely.geometry import Polygon

from . import style
from .layout import Building, Layout, rng_for

# material kinds, the shader switches on these
FACADE, ROOF_FLAT, ROOF_TILE, GROUND, CROWN, TRUNK, CAR, CAR_GLASS, UNIT = range(9)
# object ids of non-building triangles (buildings use their index >= 0)
OBJ_GROUND, OBJ_TREE, OBJ_CAR = -1, -2, -3
GROUND_HALF = 3000.0  # metres: the ground runs to the horizon, haze hides its edge


@dataclass
class Materials:
    kind: np.ndarray     # (M,) int32
    colour: np.ndarray   # (M, 3) float32 main albedo
    colour2: np.ndarray  # (M, 3) glass
    colour3: np.ndarray  # (M, 3) frames
    params: np.ndarray   # (M, 8) float32: floor height, bay, window w, window h, pattern, seed


@dataclass
class SceneMesh:
    tris: np.ndarray     # (T, 3, 3) float32 world vertices
    uv: np.ndarray       # (T, 3, 2) float32 texture coordinates (metres)
    mat: np.ndarray      # (T,) int32 material index
    obj: np.ndarray      # (T,) int32 building index, or OBJ_*
    aux: np.ndarray      # (T,) float32 wall length for facades (window margins), else 0
    materials: Materials
    smooth: np.ndarray   # (T,) int32 row in vnormals for smooth-shaded triangles (tree crowns), else -1
    vnormals: np.ndarray  # (S, 3, 3) float32 vertex normals of those triangles


class _Builder:
    def __init__(self) -> None:
        self.tris: list[np.ndarray] = []
        self.uv: list[np.ndarray] = []
        self.mat: list[np.ndarray] = []
        self.obj: list[np.ndarray] = []
        self.aux: list[np.ndarray] = []
        self.smooth: list[np.ndarray] = []
        self.vnormals: list[np.ndarray] = []
        self.n_smooth = 0
        self.m_kind: list[int] = []
        self.m_cols: list[tuple] = []
        self.m_params: list[list[float]] = []

    def material(self, kind: int, c1, c2=(0, 0, 0), c3=(0, 0, 0), params=()) -> int:
        self.m_kind.append(kind)
        self.m_cols.append((c1, c2, c3))
        p = list(params) + [0.0] * (8 - len(params))
        self.m_params.append(p)
        return len(self.m_kind) - 1

    def add(self, tris: np.ndarray, uv: np.ndarray, mat: int | np.ndarray, obj: int, aux=0.0,
            normals: np.ndarray | None = None) -> None:
        n = len(tris)
        if n == 0:
            return
        if normals is None:
            self.smooth.append(np.full(n, -1, np.int32))
        else:
            self.smooth.append(np.arange(self.n_smooth, self.n_smooth + n, dtype=np.int32))
            self.vnormals.append(np.asarray(normals, np.float32).reshape(n, 3, 3))
            self.n_smooth += n
        self.tris.append(np.asarray(tris, np.float32).reshape(n, 3, 3))
        self.uv.append(np.asarray(uv, np.float32).reshape(n, 3, 2))
        self.mat.append(np.broadcast_to(np.asarray(mat, np.int32), (n,)).copy())
        self.obj.append(np.full(n, obj, np.int32))
        self.aux.append(np.broadcast_to(np.asarray(aux, np.float32), (n,)).copy())

    def build(self) -> SceneMesh:
        cols = np.array(self.m_cols, np.float32)
        mats = Materials(np.array(self.m_kind, np.int32), cols[:, 0], cols[:, 1], cols[:, 2],
                         np.array(self.m_params, np.float32))
        vn = np.concatenate(self.vnormals) if self.vnormals else np.zeros((0, 3, 3), np.float32)
        return SceneMesh(np.concatenate(self.tris), np.concatenate(self.uv), np.concatenate(self.mat),
                         np.concatenate(self.obj), np.concatenate(self.aux), mats,
                         np.concatenate(self.smooth), vn)


def _quad(a, b, c, d) -> np.ndarray:
    return np.array([[a, b, c], [a, c, d]], np.float64)


def _box_uv(tris: np.ndarray) -> np.ndarray:
    """Planar UVs per triangle along its dominant axis (box mapping)."""
    n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    ax = np.argmax(np.abs(n), axis=1)
    keep = np.array([[1, 2], [0, 2], [0, 1]])[ax]  # drop the dominant axis
    return np.take_along_axis(tris, keep[:, None, :].repeat(3, axis=1), axis=2)


def _walls(poly: Polygon, z0: float, z1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tris, uvs, aux = [], [], []
    for ring in [poly.exterior, *poly.interiors]:
        xy = np.asarray(ring.coords)
        for p, q in zip(xy[:-1], xy[1:]):
            length = float(np.hypot(*(q - p)))
            if length < 1e-3:
                continue
            tris.append(_quad((*p, z0), (*q, z0), (*q, z1), (*p, z1)))
            uvs.append(np.array([[[0, z0], [length, z0], [length, z1]], [[0, z0], [length, z1], [0, z1]]]))
            aux += [length, length]
    return np.concatenate(tris), np.concatenate(uvs), np.array(aux)


def _box(cx: float, cy: float, z0: float, z1: float, w: float, d: float, angle: float,
         bottom: bool = False) -> np.ndarray:
    """Triangles of an oriented box (w along the angle direction)."""
    ca, sa = math.cos(angle), math.sin(angle)
    corners = []
    for lx, ly in ((-w / 2, -d / 2), (w / 2, -d / 2), (w / 2, d / 2), (-w / 2, d / 2)):
        corners.append((cx + ca * lx - sa * ly, cy + sa * lx + ca * ly))
    lo = [(*c, z0) for c in corners]
    hi = [(*c, z1) for c in corners]
    faces = [_quad(lo[i], lo[(i + 1) % 4], hi[(i + 1) % 4], hi[i]) for i in range(4)]
    faces.append(_quad(*hi))
    if bottom:
        faces.append(_quad(lo[3], lo[2], lo[1], lo[0]))
    return np.concatenate(faces)


def _building(bld: _Builder, b: Building, unit_mat: int) -> None:
    st = style.FACADE_STYLES[b.facade_style]
    seed = float(rng_for(0, "material", b.index).integers(1, 2 ** 20))
    facade = bld.material(FACADE, b.facade_colour, st.glass, st.frame,
                          (b.floor_height, b.bay, b.window_width, b.window_height, st.pattern, seed))
    roof_kind = ROOF_FLAT if b.roof == "flat" else ROOF_TILE
    roof = bld.material(roof_kind, b.roof_colour, params=(0, 0, 0, 0, 0, seed))
    t, uv, aux = _walls(b.footprint, 0.0, b.height)
    bld.add(t, uv, facade, b.index, aux)
    ca, sa = math.cos(b.angle), math.sin(b.angle)
    c = b.footprint.centroid

    def to_local(p: np.ndarray) -> np.ndarray:
        dx, dy = p[..., 0] - c.x, p[..., 1] - c.y
        return np.stack([ca * dx + sa * dy, -sa * dx + ca * dy], -1)

    if b.roof == "flat":
        v2, f = trimesh.creation.triangulate_polygon(b.footprint, engine="earcut")
        tri2 = v2[f]
        tris = np.concatenate([tri2, np.full(tri2.shape[:2] + (1,), b.height)], -1)
        bld.add(tris, to_local(tri2), roof, b.index)
        for x, y, w, d, h in b.roof_units:
            bt = _box(x, y, b.height, b.height + h, w, d, b.angle)
            bld.add(bt, _box_uv(bt), unit_mat, b.index)
        return
    # pitched roofs on rectangles: work in the building's local frame, ridge along local x
    local = affinity.rotate(b.footprint, -b.angle, origin=c, use_radians=True)
    lx0, ly0, lx1, ly1 = local.bounds
    w, d = lx1 - lx0, ly1 - ly0
    ang = b.angle
    if d > w:  # turn the frame so the ridge runs along the longer side
        w, d, ang = d, w, ang + math.pi / 2
    ca, sa = math.cos(ang), math.sin(ang)

    def world(lx: float, ly: float, z: float) -> tuple[float, float, float]:
        return (c.x + ca * lx - sa * ly, c.y + sa * lx + ca * ly, z)

    h, r = b.height, b.roof_height
    inset = 0.0 if b.roof == "gable" else d / 2
    # local (x, y) of the eave corners and ridge ends
    L = {"A": (-w / 2, -d / 2), "B": (w / 2, -d / 2), "C": (w / 2, d / 2), "D": (-w / 2, d / 2),
         "R0": (-w / 2 + inset, 0.0), "R1": (w / 2 - inset, 0.0)}
    Z = {k: (h + r if k.startswith("R") else h) for k in L}
    P = {k: world(*L[k], Z[k]) for k in L}
    sec = math.hypot(r, d / 2) / (d / 2)  # slope length per horizontal metre across the ridge
    # long slopes: u along the ridge, v down the slope, so tile rows run parallel to the ridge
    for quad in (("A", "B", "R1", "R0"), ("C", "D", "R0", "R1")):
        uv = {k: (L[k][0], (d / 2 - abs(L[k][1])) * sec) for k in quad}
        a, bb, cc, dd = quad
        bld.add(_quad(P[a], P[bb], P[cc], P[dd]),
                np.array([[uv[a], uv[bb], uv[cc]], [uv[a], uv[cc], uv[dd]]]), roof, b.index)
    ends = (("B", "C", "R1"), ("D", "A", "R0"))
    if b.roof == "gable":  # triangular gable walls, facade material
        for p, q, top in ends:
            length = d
            bld.add(np.array([[P[p], P[q], P[top]]]), np.array([[[0, h], [length, h], [length / 2, h + r]]]),
                    facade, b.index, length)
    else:
        sec_end = math.hypot(r, inset) / max(inset, 1e-6)
        for p, q, top in ends:
            uv = [(L[k][1], (w / 2 - abs(L[k][0])) * sec_end) for k in (p, q, top)]
            bld.add(np.array([[P[p], P[q], P[top]]]), np.array([uv]), roof, b.index)


def build_mesh(layout: Layout, seed: int) -> SceneMesh:
    bld = _Builder()
    unit_mat = bld.material(UNIT, style.ROOF_UNIT, params=(0, 0, 0, 0, 0, 7))
    ground_mat = bld.material(GROUND, style.GROUND_COLOURS[style.GRASS])
    crown_mats = [bld.material(CROWN, g, params=(0, 0, 0, 0, 0, 11 + i)) for i, g in enumerate(style.TREE_GREENS)]
    trunk_mat = bld.material(TRUNK, style.TRUNK)
    car_mats = [bld.material(CAR, c) for c in style.CAR_COLOURS]
    glass_mat = bld.material(CAR_GLASS, (0.07, 0.08, 0.09))

    cx = 0.5 * (layout.extent[0] + layout.extent[2])
    cy = 0.5 * (layout.extent[1] + layout.extent[3])
    g = GROUND_HALF
    gq = _quad((cx - g, cy - g, 0), (cx + g, cy - g, 0), (cx + g, cy + g, 0), (cx - g, cy + g, 0))
    bld.add(gq, gq[..., :2], ground_mat, OBJ_GROUND)

    for b in layout.buildings:
        _building(bld, b, unit_mat)

    sphere = trimesh.creation.icosphere(subdivisions=1)
    sv, sf = np.asarray(sphere.vertices), np.asarray(sphere.faces)
    crowns, crown_n, crown_m, trunks = [], [], [], []
    for i, t in enumerate(layout.trees):
        trng = rng_for(seed, "tree", i)
        v = sv * (1 + trng.uniform(-0.18, 0.18, (len(sv), 1)))
        axes = np.array([t.crown_radius, t.crown_radius, t.crown_height])
        # smooth normals of the ellipsoid: the low-poly crown shades round
        nv = sv / axes
        nv /= np.linalg.norm(nv, axis=1, keepdims=True)
        v = v * axes + [t.x, t.y, t.crown_center_z]
        crowns.append(v[sf])
        crown_n.append(nv[sf])
        crown_m.append(np.full(len(sf), crown_mats[t.green]))
        rad = 0.15 + 0.04 * t.crown_radius
        top = t.crown_center_z
        ang = np.linspace(0, 2 * np.pi, 7)
        ring = np.stack([t.x + rad * np.cos(ang), t.y + rad * np.sin(ang)], -1)
        for k in range(6):
            trunks.append(_quad((*ring[k], 0), (*ring[k + 1], 0), (*ring[k + 1], top), (*ring[k], top)))
    if crowns:
        ct = np.concatenate(crowns)
        bld.add(ct, _box_uv(ct), np.concatenate(crown_m), OBJ_TREE, normals=np.concatenate(crown_n))
        tt = np.concatenate(trunks)
        bld.add(tt, _box_uv(tt), trunk_mat, OBJ_TREE)
    for car in layout.cars:
        ca, sa = math.cos(car.angle), math.sin(car.angle)
        body = _box(car.x, car.y, 0.28, 0.95, 4.4, 1.8, car.angle)
        chassis = _box(car.x, car.y, 0.0, 0.3, 3.6, 1.6, car.angle)
        cab = _box(car.x - 0.3 * ca, car.y - 0.3 * sa, 0.95, 1.45, 2.4, 1.6, car.angle)
        bld.add(body, _box_uv(body), car_mats[car.colour], OBJ_CAR)
        bld.add(chassis, _box_uv(chassis), glass_mat, OBJ_CAR)
        cab_mats = np.array([glass_mat] * 8 + [car_mats[car.colour]] * 2)  # sides glass, roof painted
        bld.add(cab, _box_uv(cab), cab_mats, OBJ_CAR)
    return bld.build()


def write_ply(mesh: SceneMesh, path: Path) -> None:
    """Binary PLY: unshared vertices with the material's mean colour, faces with an `object` id
    (building index, -1 ground, -2 trees, -3 cars). Byte-for-byte deterministic."""
    n = len(mesh.tris)
    col = mesh.materials.colour[mesh.mat]
    kind = mesh.materials.kind[mesh.mat]
    col = np.where((kind == GROUND)[:, None], np.array(style.GROUND_COLOURS[style.GRASS], np.float32), col)
    vert = np.zeros(n * 3, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                  ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    v = mesh.tris.reshape(-1, 3)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    c8 = np.clip(np.repeat(col, 3, axis=0) * 255 + 0.5, 0, 255).astype(np.uint8)
    vert["red"], vert["green"], vert["blue"] = c8[:, 0], c8[:, 1], c8[:, 2]
    face = np.zeros(n, dtype=[("n", "u1"), ("v", "<i4", (3,)), ("object", "<i4")])
    face["n"] = 3
    face["v"] = np.arange(n * 3, dtype=np.int32).reshape(n, 3)
    face["object"] = mesh.obj
    header = (f"ply\nformat binary_little_endian 1.0\ncomment SkyLink synthetic campus, local ENU metres, z up\n"
              f"element vertex {n * 3}\nproperty float x\nproperty float y\nproperty float z\n"
              f"property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {n}\nproperty list uchar int vertex_indices\nproperty int object\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(vert.tobytes())
        f.write(face.tobytes())
