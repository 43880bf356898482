"""Ray-cast renderer of the synthetic world: open3d RaycastingScene + batched numpy shading.

One `cast_rays` call gives per pixel the hit distance, primitive id, barycentrics and normal; the
texture coordinates come from the primitive's UVs and the barycentrics, the albedo from
`synthetic.shade`, and a second ray batch toward the sun gives cast shadows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from .camera import Camera
from .geometry import SceneMesh
from .layout import Layout, rng_for
from .shade import NoiseBank, Shader

SKY_ZENITH = np.array([0.36, 0.55, 0.86], np.float32)
SKY_HORIZON = np.array([0.80, 0.85, 0.90], np.float32)
HAZE_PER_M = 1.0 / 2500.0
_NOISE_TABLE = np.random.default_rng(12345).standard_normal(1 << 22, dtype=np.float32)
TONE_STEPS, TONE_MAX = 2048, 1.6
_x = np.linspace(0, TONE_MAX, TONE_STEPS + 1)
_y = (1 - np.exp(-1.7 * _x ** 0.9)) / (1 - np.exp(-1.7 * TONE_MAX ** 0.9))
TONE_LUT = np.clip(255 * _y + 0.5, 0, 255).astype(np.uint8)


@dataclass
class Light:
    sun: np.ndarray          # (3,) unit vector toward the sun
    ambient: float           # share of sky light, 0..1
    exposure: float
    white_balance: np.ndarray  # (3,) per-channel gains
    noise: float             # sensor noise std (0..1 scale)
    seed: int                # noise and clouds

    @staticmethod
    def sun_vector(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
        """Azimuth clockwise from north (ENU: x east, y north)."""
        az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
        return np.array([math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])


@dataclass
class Hits:
    t: np.ndarray            # (N,) distance along the (unnormalised) ray; inf for misses
    prim: np.ndarray         # (N,) triangle index (only valid where hit)
    bary: np.ndarray         # (N, 2)
    normal: np.ndarray       # (N, 3)
    hit: np.ndarray          # (N,) bool


@dataclass
class Frame:
    rgb: np.ndarray          # (H, W, 3) uint8
    depth: np.ndarray | None  # (H, W) float32 camera z (inf where nothing is hit)
    objects: np.ndarray | None  # (H, W) int32 object id (building index, <0 others, -100 sky)


SKY = -100
CHUNK = 1 << 16


class Renderer:
    """Holds the raycasting scene and the shader of one world."""

    def __init__(self, mesh: SceneMesh, layout: Layout, seed: int, shadows: bool = True, threads: int = 0) -> None:
        """`threads`: ray-casting threads (0: open3d's choice, all cores). A pool with one process
        per core passes 1: threads on top of processes only contend for the same cores."""
        self.mesh = mesh
        self.shadows = shadows
        self.threads = int(threads)
        self.scene = o3d.t.geometry.RaycastingScene(nthreads=self.threads)
        n = len(mesh.tris)
        verts = o3d.core.Tensor(np.ascontiguousarray(mesh.tris.reshape(-1, 3), np.float32))
        idx = o3d.core.Tensor(np.arange(3 * n, dtype=np.uint32).reshape(n, 3))
        self.scene.add_triangles(verts, idx)
        self.shader = Shader(mesh.materials, NoiseBank(seed), layout.ground_colours,
                             layout.ground_classes, layout.ground_origin)

    def cast(self, rays: np.ndarray) -> Hits:
        # a few thousand rays (the planner's visibility checks) take longer to hand out to threads
        # than to trace on one
        ans = self.scene.cast_rays(o3d.core.Tensor(rays), nthreads=self.threads if len(rays) > 8192 else 1)
        t = ans["t_hit"].numpy()
        hit = np.isfinite(t)
        return Hits(t, ans["primitive_ids"].numpy(), ans["primitive_uvs"].numpy(),
                    ans["primitive_normals"].numpy(), hit)

    def objects(self, cam: Camera) -> np.ndarray:
        """Object id per pixel (cheap: no shading)."""
        h = self.cast(cam.rays())
        obj = np.full(len(h.t), SKY, np.int32)
        obj[h.hit] = self.mesh.obj[h.prim[h.hit]]
        return obj.reshape(cam.height, cam.width)

    def render(self, cam: Camera, light: Light, depth: bool = False, objects: bool = False) -> Frame:
        n = cam.width * cam.height
        rgb = np.empty((n, 3), np.uint8)
        dep = np.empty(n, np.float32) if depth else None
        obj = np.empty(n, np.int32) if objects else None
        # chunks of rays keep every intermediate array in the CPU caches: a 512 x 512 frame in one
        # piece ran ~2x slower per pixel than in 64k-ray pieces on this machine
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            self._render_rays(cam, light, cam.rays(start, stop), start, rgb, dep, obj)
        shape = (cam.height, cam.width)
        return Frame(rgb.reshape(*shape, 3), None if dep is None else dep.reshape(shape),
                     None if obj is None else obj.reshape(shape))

    def _render_rays(self, cam: Camera, light: Light, rays: np.ndarray, start: int, rgb: np.ndarray,
                     dep: np.ndarray | None, obj: np.ndarray | None) -> None:
        h = self.cast(rays)
        n = len(rays)
        f32 = np.float32
        colour = np.empty((n, 3), f32)
        sel = np.nonzero(h.hit)[0]
        miss = np.nonzero(~h.hit)[0]
        sun = light.sun.astype(f32)
        if len(miss):
            d = rays[miss, 3:6]
            colour[miss] = self._sky(d / np.linalg.norm(d, axis=1, keepdims=True), light)
        if len(sel):
            prim = h.prim[sel]
            b = h.bary[sel]
            tri_uv = self.mesh.uv[prim]
            uv = tri_uv[:, 0] + b[:, :1] * (tri_uv[:, 1] - tri_uv[:, 0]) + b[:, 1:] * (tri_uv[:, 2] - tri_uv[:, 0])
            nrm = h.normal[sel]  # unit face normals
            d = rays[sel, 3:6]
            dlen = np.sqrt(np.einsum("nc,nc->n", d, d))
            facing = np.einsum("nc,nc->n", nrm, d) / dlen
            sm = self.mesh.smooth[prim]
            si = np.nonzero(sm >= 0)[0]
            if len(si):  # interpolated vertex normals where the mesh asks for smooth shading
                vn = self.mesh.vnormals[sm[si]]
                bs = b[si]
                ns = vn[:, 0] + bs[:, :1] * (vn[:, 1] - vn[:, 0]) + bs[:, 1:] * (vn[:, 2] - vn[:, 0])
                nrm = nrm.copy()
                nrm[si] = ns / np.linalg.norm(ns, axis=1, keepdims=True) * np.sign(
                    np.einsum("nc,nc->n", ns, h.normal[sel][si]))[:, None]
            nrm = nrm * np.where(facing > 0, f32(-1), f32(1))[:, None]  # two-sided: face the camera
            cos_i = np.maximum(np.abs(facing), f32(0.25))
            t = h.t[sel]
            dist = t * dlen
            if cam.model == "PINHOLE":
                fp = dist * f32(1.0 / cam.K[0, 0]) / cos_i
            else:
                fp = f32(1.0 / cam.K[0, 0]) / cos_i
            albedo = self.shader.albedo(self.mesh.mat[prim], uv, self.mesh.aux[prim], fp)
            lambert = np.maximum(np.einsum("nc,c->n", nrm, sun), f32(0))  # not BLAS: see camera._rotate
            if self.shadows:
                lit = np.nonzero(lambert > 0)[0]
                if len(lit):
                    P = rays[sel[lit], :3] + d[lit] * t[lit, None]
                    srays = np.empty((len(lit), 6), f32)
                    srays[:, :3] = P + nrm[lit] * f32(0.03) + sun * f32(0.02)
                    srays[:, 3:] = sun
                    occ = self.scene.test_occlusions(o3d.core.Tensor(srays), nthreads=self.threads).numpy()
                    lambert[lit[occ]] = 0.0
            shade = f32(light.ambient) * (f32(0.7) + f32(0.3) * nrm[:, 2]) + f32((1 - light.ambient) * 1.25) * lambert
            col = albedo * shade[:, None]
            if cam.model == "PINHOLE":
                fh = np.exp(-dist * f32(HAZE_PER_M))[:, None]
                col = col * fh + SKY_HORIZON * (1 - fh)
            colour[sel] = col
        colour *= (light.exposure * light.white_balance).astype(f32)
        if light.noise > 0:
            # a window of a fixed Gaussian table at a per-image offset: as random as a fresh
            # draw for our purpose, a fraction of its cost
            base = int(rng_for(light.seed, "sensor").integers(len(_NOISE_TABLE)))
            off = (base + 3 * start) % (len(_NOISE_TABLE) - colour.size)
            colour += _NOISE_TABLE[off:off + colour.size].reshape(colour.shape) * f32(light.noise)
        # a camera-like tone curve: lifts shadows, rolls off highlights
        idx = np.clip(colour * f32(TONE_STEPS / TONE_MAX), 0, TONE_STEPS).astype(np.int32)
        rgb[start:start + n] = TONE_LUT[idx]
        if dep is not None:
            dep[start:start + n] = np.where(h.hit, h.t, np.inf)
        if obj is not None:
            o = np.full(n, SKY, np.int32)
            o[sel] = self.mesh.obj[h.prim[sel]]
            obj[start:start + n] = o

    def _sky(self, d: np.ndarray, light: Light) -> np.ndarray:
        up = np.clip(d[:, 2], 0, 1)
        k = (up ** 0.6)[:, None].astype(np.float32)
        col = SKY_HORIZON * (1 - k) + SKY_ZENITH * k
        # clouds on a plane 1 km up, shifted per image
        z = np.maximum(d[:, 2], 0.03)
        cx, cy = d[:, 0] / z * 1000.0, d[:, 1] / z * 1000.0
        off = float(rng_for(light.seed, "clouds").uniform(0, 1e4))
        fp = np.full(len(d), 20.0, np.float32) / z
        c = self.shader.noise.fbm(cx + off, cy, 900.0, 5, fp, gain=0.6, seed=off)
        cover = np.clip(c - 0.3, 0, 1)[:, None] * (d[:, 2] > 0)[:, None]
        col = col * (1 - cover) + np.float32(0.95) * cover
        # sun glow
        glow = np.clip(np.einsum("nc,c->n", d, light.sun), 0, 1) ** 40
        return (col + 0.3 * glow[:, None]).astype(np.float32)
