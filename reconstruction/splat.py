"""A small PyTorch z-buffer point splatting renderer: batched views, CPU and CUDA with the same code.

pytorch3d is not installable here (DESIGN.md section 5), and a rasteriser is not needed for
square splats: every point writes a small block of pixels, and one `scatter_reduce(amin)` over
a packed (depth, point index) key resolves visibility and the winning point in a single pass.

Conventions (pycolmap / OpenCV): `cam_from_world` maps world to camera coordinates, the camera
looks along +z, x right, y down; pixel (i, j) covers [i, i+1) x [j, j+1), so its centre is at
(i + 0.5, j + 0.5) and a point projecting to u = 10.5 lands in column 10.
Orthographic cameras use the same K on camera coordinates without the division by z:
u = fx * x + s * y + cx, v = fy * y + cy (fx, fy in pixels per metre); depth stays z.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

# Sentinel of the packed z-buffer: larger than any (depth bits << 32 | index) key of a finite depth.
_EMPTY = torch.iinfo(torch.int64).max
_LOW32 = 0xFFFFFFFF


class SplatResult(NamedTuple):
    color: Tensor   # [B, H, W, C], colors.dtype, `background` where empty
    depth: Tensor   # [B, H, W] float32, camera z (metres), 0 where empty
    mask: Tensor    # [B, H, W] bool, True where a point was splatted
    index: Tensor   # [B, H, W] int64, index of the visible point, -1 where empty


def _as_batch(x: Tensor, shape: tuple[int, int], name: str) -> Tensor:
    if x.dim() == 2:
        x = x.unsqueeze(0)
    if x.dim() != 3 or tuple(x.shape[1:]) != shape:
        raise ValueError(f"{name} must be [B,{shape[0]},{shape[1]}], got {tuple(x.shape)}")
    return x


def project_points(
    points: Tensor, K: Tensor, cam_from_world: Tensor, orthographic: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """Project world points [N,3] into B cameras: returns u, v (pixels) and z (camera depth), each [B,N]."""
    K = _as_batch(K, (3, 3), "K").to(points)
    T = _as_batch(cam_from_world, (3, 4), "cam_from_world").to(points)
    # Fold K into the pose once per view so a single batched matmul gives homogeneous pixels.
    if orthographic:
        # u = fx*x + s*y + cx ; v = fy*y + cy ; the third row keeps z.
        A = torch.zeros_like(T)
        A[:, :2, :] = K[:, :2, :2] @ T[:, :2, :]
        A[:, :2, 3] += K[:, :2, 2]
        A[:, 2, :] = T[:, 2, :]
    else:
        A = K @ T
    uvw = torch.baddbmm(A[:, :, 3].unsqueeze(1), points.unsqueeze(0).expand(A.shape[0], -1, -1),
                        A[:, :, :3].transpose(1, 2))
    z = uvw[..., 2]
    if orthographic:
        return uvw[..., 0], uvw[..., 1], z
    inv = 1.0 / z
    return uvw[..., 0] * inv, uvw[..., 1] * inv, z


def _splat_sizes(
    z: Tensor, K: Tensor, point_size: float, world_size: float | None, orthographic: bool, max_size: int
) -> tuple[Tensor | None, int]:
    """Per-point splat side in whole pixels ([B,N] int64, or None when constant) and the largest side."""
    if world_size is None:
        side = max(1, int(round(point_size)))
        return None, side
    f = 0.5 * (K[:, 0, 0].abs() + K[:, 1, 1].abs()).to(z).unsqueeze(1)  # [B,1] pixels per metre (at z=1)
    px = world_size * f if orthographic else world_size * f / z.clamp_min(1e-6)
    side = torch.round(px).clamp_(1, max_size).to(torch.int64)
    if orthographic:
        side = side.expand_as(z)
    return side, int(side.max()) if side.numel() else 1


@torch.no_grad()
def splat_points(
    points: Tensor,
    colors: Tensor,
    K: Tensor,
    cam_from_world: Tensor,
    width: int,
    height: int,
    point_size: float = 1.0,
    *,
    world_size: float | None = None,
    orthographic: bool = False,
    near: float = 1e-3,
    max_size: int = 16,
    background: float = 0.0,
    chunk: int = 1 << 22,
) -> SplatResult:
    """Render points [N,3] with colours [N,C] into B views by z-buffered square splats.

    K [B,3,3] (or [3,3]), cam_from_world [B,3,4] (or [3,4]); `point_size` is the splat side in
    pixels, or, when `world_size` (metres) is given, the side is world_size * f / z pixels (grows
    as the point comes closer), clamped to [1, max_size]. Points behind `near` are dropped.
    Returns a `SplatResult` (color, depth, mask, index); `color, depth, mask, _ = ...` unpacks it.
    The nearest point wins each pixel; ties go to the lower point index (deterministic).
    """
    if points.dim() != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be [N,3], got {tuple(points.shape)}")
    if colors.dim() == 1:
        colors = colors.unsqueeze(1)
    if colors.shape[0] != points.shape[0]:
        raise ValueError(f"colors has {colors.shape[0]} rows for {points.shape[0]} points")
    if points.shape[0] >= 2**31:
        raise ValueError("at most 2**31 - 1 points per call (the point index is packed into 32 bits)")
    device = points.device
    points = points.to(torch.float32)
    finite = torch.isfinite(points).all(dim=1)
    kept = None if bool(finite.all()) else torch.nonzero(finite).squeeze(1)
    if kept is not None:  # NaN/inf points (e.g. from a broken ply) are dropped, indices still refer to the input
        points = points[kept]
    K = _as_batch(K, (3, 3), "K").to(device, torch.float32)
    T = _as_batch(cam_from_world, (3, 4), "cam_from_world").to(device, torch.float32)
    if K.shape[0] != T.shape[0]:
        if K.shape[0] == 1:
            K = K.expand(T.shape[0], -1, -1)
        else:
            raise ValueError(f"K has {K.shape[0]} views, cam_from_world {T.shape[0]}")
    B, N, H, W = T.shape[0], points.shape[0], int(height), int(width)
    HW = H * W
    # One extra slot at the end swallows off-screen fragments, which avoids compacting with masks.
    zbuf = torch.full((B * HW + 1,), _EMPTY, dtype=torch.int64, device=device)
    view_base = (torch.arange(B, device=device, dtype=torch.int64) * HW).unsqueeze(1)
    step = max(1, chunk // max(B, 1))
    for s0 in range(0, N, step):
        _splat_chunk(points[s0:s0 + step], s0, K, T, W, H, point_size, world_size, orthographic,
                     near, max_size, view_base, zbuf)
    key = zbuf[:-1].view(B, H, W)
    mask = key != _EMPTY
    index = torch.where(mask, key & _LOW32, torch.full_like(key, -1))
    if kept is not None and kept.numel():
        index = torch.where(mask, kept[index.clamp_min(0)], index)
    # Depth is the high half of the key: positive float32 bit patterns sort like the floats.
    depth = (key >> 32).to(torch.int32).view(torch.float32)
    depth = torch.where(mask, depth, torch.zeros_like(depth))
    gathered = colors.to(device)[index.clamp_min(0).view(-1)].view(B, H, W, -1)
    color = torch.where(mask.unsqueeze(-1), gathered, torch.full_like(gathered, background))
    return SplatResult(color, depth, mask, index)


def _splat_chunk(
    pts: Tensor, offset: int, K: Tensor, T: Tensor, W: int, H: int, point_size: float,
    world_size: float | None, orthographic: bool, near: float, max_size: int,
    view_base: Tensor, zbuf: Tensor,
) -> None:
    u, v, z = project_points(pts, K, T, orthographic)
    n = pts.shape[0]
    valid = z > near
    pid = torch.arange(offset, offset + n, device=pts.device, dtype=torch.int64)
    # Positive float32 bit patterns order like the floats, so (depth bits << 32 | index) is a key
    # whose minimum is the nearest point, ties broken by the lower index.
    zbits = torch.where(valid, z, 1.0).view(torch.int32).to(torch.int64)
    key = (zbits << 32).bitwise_or_(pid).view(-1)
    side, smax = _splat_sizes(z, K, point_size, world_size, orthographic, max_size)
    half = side.to(u.dtype) * 0.5 if side is not None else 0.5 * smax
    # Top-left pixel of the block: for side 1 floor(u); for side 2 the two pixels nearest u; ...
    # Clamping keeps far off-screen points representable; they fail the bounds test below anyway.
    fx = torch.floor(u.sub_(half).add_(0.5)).clamp_(-max_size - 1, W + 1)
    fy = torch.floor(v.sub_(half).add_(0.5)).clamp_(-max_size - 1, H + 1)
    base = (fy * W + fx).to(torch.int64).add_(view_base).view(-1)
    fx, fy = fx.view(-1), fy.view(-1)
    valid = valid.view(-1)
    dump = zbuf.shape[0] - 1
    sides = side.view(-1) if side is not None else None
    okx: dict[int, Tensor] = {}
    oky: dict[int, Tensor] = {}
    for level in range(smax):
        if sides is not None and level > 0:
            # Only points whose block is wider than `level` reach this ring of offsets.
            keep = torch.nonzero(sides > level).squeeze(1)
            if keep.numel() == 0:
                break
            fx, fy, base, key, valid, sides = (a[keep] for a in (fx, fy, base, key, valid, sides))
            okx.clear()
            oky.clear()
        # Bounds tests per column / row offset, shared by the offsets of the block.
        for d in range(level + 1):
            if d not in okx:
                okx[d] = valid & (fx >= -d) & (fx < W - d)
                oky[d] = (fy >= -d) & (fy < H - d)
        ring = [(level, dy) for dy in range(level + 1)] + [(dx, level) for dx in range(level)]
        for dx, dy in ring:
            lin = torch.where(okx[dx] & oky[dy], base + (dy * W + dx), dump)
            zbuf.scatter_reduce_(0, lin, key, "amin")
