"""Geometric priors from rendered points: ground level, height above ground, normals from depth, the DSM.

All image-shaped tensors are batched [B,H,W(,3)]; an empty pixel has depth 0. Normals are unit
vectors in the world frame (z up), turned towards the camera, and zero where they cannot be
estimated, so a roof reads (0, 0, 1) in every view.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor


def estimate_ground(z: np.ndarray, percentile: float = 5.0) -> float:
    """Ground level of a scene as a low percentile of the points' heights (robust to stray low points)."""
    z = np.asarray(z, dtype=np.float64)
    z = z[np.isfinite(z)]
    if z.size == 0:
        raise ValueError("cannot estimate the ground of an empty point cloud")
    return float(np.percentile(z, percentile))


def height_above_ground(index: Tensor, points: Tensor, ground_z: float) -> Tensor:
    """Height above ground of the visible point of each pixel, [B,H,W] float32, 0 where empty.

    Uses the splatter's point index, so the height is exact rather than re-derived from depth.
    """
    valid = index >= 0
    z = points[:, 2].to(torch.float32)[index.clamp_min(0)] - ground_z
    return torch.where(valid, z, torch.zeros_like(z))


def unproject_depth(depth: Tensor, K: Tensor, cam_from_world: Tensor, orthographic: bool = False) -> Tensor:
    """World coordinates [B,H,W,3] of the pixel centres at their depth (pixel centre = index + 0.5)."""
    B, H, W = depth.shape
    dev, dt = depth.device, torch.float32
    K = K.to(dev, dt).reshape(-1, 3, 3).expand(B, 3, 3)
    T = cam_from_world.to(dev, dt).reshape(-1, 3, 4).expand(B, 3, 4)
    v, u = torch.meshgrid(torch.arange(H, device=dev, dtype=dt) + 0.5,
                          torch.arange(W, device=dev, dtype=dt) + 0.5, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)], -1).reshape(1, -1, 3).expand(B, -1, -1)  # [B,HW,3]
    ray = pix @ torch.linalg.inv(K).transpose(1, 2)  # camera coords at z = 1 (ORTHO: metres, z = 1)
    z = depth.reshape(B, -1, 1).to(dt)
    cam = torch.cat([ray[..., :2], torch.ones_like(z)], -1) * z if not orthographic else \
        torch.cat([ray[..., :2], z], -1)
    R, t = T[:, :, :3], T[:, :, 3]
    world = (cam - t[:, None, :]) @ R  # R^T (x - t), row-vector form
    return world.reshape(B, H, W, 3)


def normals_from_depth(
    depth: Tensor, K: Tensor, cam_from_world: Tensor, orthographic: bool = False, window: int = 5,
    gate: float = 4.0,
) -> Tensor:
    """World-frame unit normals [B,H,W,3] from depth maps, zero where they cannot be estimated.

    Splats are flat squares, so finite differences of a splatted depth map see steps rather than the
    surface. Instead each pixel fits a plane to the 3D points of its `window` x `window`
    neighbourhood (smallest principal axis), keeping only neighbours within `gate` times the
    window's footprint in 3D, so a silhouette does not pull in the background behind it.
    """
    B, H, W = depth.shape
    P = unproject_depth(depth, K, cam_from_world, orthographic)  # [B,H,W,3]
    valid = depth > 0
    h = window // 2
    # 3D footprint of one pixel at this depth: z / f for a pinhole, 1 / f for an orthographic view.
    Kb = K.to(P).reshape(-1, 3, 3).expand(B, 3, 3)
    f = 0.5 * (Kb[:, 0, 0].abs() + Kb[:, 1, 1].abs()).view(B, 1, 1)
    footprint = (torch.ones_like(depth, dtype=P.dtype) if orthographic else depth.to(P.dtype)) / f
    r2 = (gate * window * footprint) ** 2
    Pc = P.permute(3, 0, 1, 2).contiguous()  # [3,B,H,W]: contiguous planes keep the shifts cheap
    Pp = F.pad(Pc, (h, h, h, h))
    Vp = F.pad(valid, (h, h, h, h))
    # Moments of the gated neighbours relative to the centre point (float32-friendly), one shift at a time.
    count = torch.zeros_like(footprint)
    s1 = [torch.zeros_like(footprint) for _ in range(3)]
    pairs = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))
    s2 = [torch.zeros_like(footprint) for _ in pairs]
    for dy in range(window):
        for dx in range(window):
            q = [Pp[c, :, dy:dy + H, dx:dx + W] - Pc[c] for c in range(3)]
            d2 = q[0] * q[0] + q[1] * q[1] + q[2] * q[2]
            w = (Vp[:, dy:dy + H, dx:dx + W] & (d2 <= r2)).to(P.dtype)
            qw = [qc * w for qc in q]
            count += w
            for c in range(3):
                s1[c] += qw[c]
            for k, (a, b) in enumerate(pairs):
                s2[k] += qw[a] * q[b]
    denom = count.clamp_min(1)
    mean = [sc / denom for sc in s1]
    m2 = [s2[k] / denom - mean[a] * mean[b] for k, (a, b) in enumerate(pairs)]
    n, lam2 = plane_normal(*m2)
    # A plane needs neighbours spread in two directions; a line of points leaves the normal undefined.
    ok = valid & (count >= 4) & (lam2 > 1e-4 * footprint * footprint)
    # Turn the normal towards the camera: against the viewing ray.
    T = cam_from_world.to(P).reshape(-1, 3, 4).expand(B, 3, 4)
    if orthographic:
        ray = T[:, 2, :3][:, None, None, :].expand_as(P)  # optical axis in world coordinates
    else:
        eye = -(T[:, :, :3].transpose(1, 2) @ T[:, :, 3:]).squeeze(-1)
        ray = P - eye[:, None, None, :]
    flip = (n * ray).sum(-1, keepdim=True) > 0
    n = torch.where(flip, -n, n)
    return torch.where(ok.unsqueeze(-1), n, torch.zeros_like(n))


def plane_normal(xx: Tensor, yy: Tensor, zz: Tensor, xy: Tensor, xz: Tensor, yz: Tensor,
                 iterations: int = 2) -> tuple[Tensor, Tensor]:
    """Eigenvector of the smallest eigenvalue of symmetric 3x3 covariances given by their 6 entries.

    Batched eigh costs more than the rest of the normal estimation together; instead: the adjugate
    of C has the same eigenvectors with eigenvalues (l2 l3, l1 l3, l1 l2), so C's smallest axis is the
    adjugate's dominant one, found from its largest column by a couple of power iterations (fast,
    since l1 l2 >> l1 l3 for a planar patch). Returns the unit vectors [..., 3] and an estimate of
    the middle eigenvalue l2 (small when the points lie on a line).
    """
    # Adjugate entries (symmetric): cofactors of C.
    a00 = yy * zz - yz * yz
    a11 = xx * zz - xz * xz
    a22 = xx * yy - xy * xy
    a01 = xz * yz - xy * zz
    a02 = xy * yz - xz * yy
    a12 = xy * xz - xx * yz
    cols = torch.stack([torch.stack([a00, a01, a02], -1), torch.stack([a01, a11, a12], -1),
                        torch.stack([a02, a12, a22], -1)], -2)  # [..., 3 cols, 3]
    best = cols.norm(dim=-1).argmax(-1, keepdim=True)
    v = torch.gather(cols, -2, best[..., None].expand(*best.shape, 3)).squeeze(-2)
    A = cols  # symmetric: rows == columns
    for _ in range(iterations):
        v = v / v.norm(dim=-1, keepdim=True).clamp_min(1e-30)
        v = (A @ v.unsqueeze(-1)).squeeze(-1)
    top = v.norm(dim=-1)  # ~ l1 * l2 (v was unit before the last product)
    trace = (xx + yy + zz).clamp_min(1e-30)  # ~ l1 when l1 dominates; then l2 ~ top / trace
    return v / top.unsqueeze(-1).clamp_min(1e-30), top / trace


def fill_holes(height: np.ndarray, valid: np.ndarray, max_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Fill empty pixels of a 2D map with their nearest valid value when it is within `max_px` pixels.

    Sparse SfM points leave gaps between splats; a DSM should not read those gaps as ground.
    """
    if max_px <= 0 or valid.all() or not valid.any():
        return height, valid
    dist, (iy, ix) = ndimage.distance_transform_edt(~valid, return_indices=True)
    fill = (~valid) & (dist <= max_px)
    out = height.copy()
    out[fill] = height[iy[fill], ix[fill]]
    return out, valid | fill


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """uint8 image of unit normals: (n + 1) / 2 * 255 per channel (x->R, y->G, z->B); empty stays black."""
    valid = np.abs(normals).sum(-1, keepdims=True) > 0
    rgb = np.clip((normals + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
    return np.where(valid, rgb, 0).astype(np.uint8)
