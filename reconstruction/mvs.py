"""Multi-view stereo in torch: a depth map per registered image by plane sweep over inverse depth,
photometric (ZNCC) and geometric (cross-view reprojection) consistency masks.

Same code on CPU (2 cores) and CUDA. Per reference image: its best co-visible source images (shared
SfM points, weighted by baseline angle), a depth range from the sparse points it sees, a coarse sweep
at reduced resolution over `n_planes` inverse-depth planes, then a fine sweep of `refine_planes`
hypotheses around the upsampled coarse depth; each sweep scores the mean of the best `top_k` source
ZNCCs (7x7 windows from box filters) and refines the winner by a parabola through its neighbours.
Cameras follow pycolmap (OpenCV axes, `cam_from_world`, pixel centres at i + 0.5).
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pycolmap
import torch
import torch.nn.functional as F

logger = logging.getLogger("skylink")

PINHOLE_MODELS = ("PINHOLE", "SIMPLE_PINHOLE")


@dataclass
class MVSOptions:
    max_image_size: int = 256       # longest side of the fine level (pixels)
    n_planes: int = 32              # inverse-depth planes of the coarse sweep
    coarse_factor: int = 2          # coarse level = fine / this (1: a single level)
    refine_planes: int = 5          # hypotheses per refinement round at the fine level (0: no fine sweep)
    refine_rounds: int = 3          # refinement rounds, each over +-1 step of the previous one
    refine_smooth: int = 5          # later rounds centre on the previous estimate's k x k mean (1: on itself)
    refine_confident: bool = False  # ... counting only its photometrically confident pixels (tried: README)
    n_sources: int = 3              # co-visible source images per reference image
    top_k: int = 2                  # the best k source scores are averaged (occlusion robust)
    window: int = 7                 # ZNCC window side (pixels, odd)
    min_score: float = 0.5          # photometric confidence: aggregated ZNCC at the chosen depth
    min_texture: float = 2.0        # grey-level std (0-255) in the window below which a pixel is textureless
    max_angle_deg: float = 45.0     # source images seen under a wider baseline angle are not used
    geo_views: int = 4              # neighbours checked for geometric consistency
    geo_pixel_error: float = 1.0    # reprojection error (fine-level pixels)
    geo_depth_error: float = 0.004  # relative depth error
    min_consistent: int = 1         # neighbours that must agree for a pixel to be kept
    device: str = "auto"            # auto | cpu | cuda


@dataclass
class View:
    """One undistorted, resized registered image and its pinhole camera."""

    name: str
    image_id: int
    rgb: np.ndarray                 # H x W x 3 uint8
    K: np.ndarray                   # 3 x 3
    cam_from_world: np.ndarray      # 3 x 4
    near: float
    far: float
    sources: list[int] = field(default_factory=list)    # indices into the view list, best first
    neighbours: list[int] = field(default_factory=list)  # geometric-consistency partners

    @property
    def centre(self) -> np.ndarray:
        R, t = self.cam_from_world[:, :3], self.cam_from_world[:, 3]
        return -R.T @ t


@dataclass
class DepthMap:
    depth: np.ndarray               # H x W float32, 0 = no depth
    score: np.ndarray               # H x W float32 aggregated ZNCC
    photometric: np.ndarray         # H x W bool
    consistent: np.ndarray | None = None  # H x W int: neighbours that agree (after geometric_consistency)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("mvs device 'cuda' requested but no CUDA device is available")
    return torch.device(name)


# ---------------------------------------------------------------- views from the SfM model

def pinhole_K(camera: pycolmap.Camera) -> np.ndarray:
    """The pinhole part of a COLMAP camera (focal, principal point), distortion left out."""
    return np.asarray(camera.calibration_matrix(), dtype=np.float64)


def undistort(img: np.ndarray, camera: pycolmap.Camera) -> tuple[np.ndarray, np.ndarray]:
    """Image resampled to the pinhole camera with the same focal and principal point, and its K."""
    K = pinhole_K(camera)
    if camera.model.name in PINHOLE_MODELS:
        return img, K
    h, w = img.shape[:2]
    u, v = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    rays = np.stack([(u.ravel() - K[0, 2]) / K[0, 0], (v.ravel() - K[1, 2]) / K[1, 1], np.ones(u.size)], 1)
    src = camera.img_from_cam(rays, check_cheirality=False).astype(np.float32) - 0.5  # cv2: centres at integers
    mx, my = src[:, 0].reshape(h, w), src[:, 1].reshape(h, w)
    return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT), K


def _image_points(rec: pycolmap.Reconstruction, image: pycolmap.Image) -> np.ndarray:
    ids = [p.point3D_id for p in image.points2D if p.has_point3D()]
    return np.array([rec.points3D[i].xyz for i in ids]).reshape(-1, 3)


def depth_range(rec: pycolmap.Reconstruction, image: pycolmap.Image, margin: float = 0.2) -> tuple[float, float] | None:
    """Near and far depth of the sparse points the image sees (robust percentiles, widened by `margin`)."""
    xyz = _image_points(rec, image)
    if len(xyz) < 5:
        return None
    P = np.asarray(image.cam_from_world().matrix())
    z = xyz @ P[:, :3].T[:, 2] + P[2, 3]
    z = z[z > 0]
    if len(z) < 5:
        return None
    lo, hi = np.percentile(z, [1, 99])
    return float(lo * (1 - margin)), float(hi * (1 + margin))


def covisibility(rec: pycolmap.Reconstruction) -> dict[tuple[int, int], int]:
    """Number of 3D points shared by each pair of registered images (a < b)."""
    counts: dict[tuple[int, int], int] = defaultdict(int)
    for p in rec.points3D.values():
        ids = sorted({el.image_id for el in p.track.elements})
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                counts[(a, b)] += 1
    return counts


def select_sources(views: list[View], shared: dict[tuple[int, int], int], n: int, max_angle_deg: float,
                   min_angle_deg: float = 5.0) -> list[list[int]]:
    """Per view, the indices of the others ranked by shared points x a baseline-angle weight.

    The angle is measured at the reference's scene centre (its camera centre plus the mid depth along
    the optical axis): tiny baselines give no depth resolution, wide ones break fronto-parallel windows.
    """
    centres = np.stack([v.centre for v in views])
    out = []
    for i, v in enumerate(views):
        axis = v.cam_from_world[2, :3]
        target = v.centre + axis * 2.0 / (1.0 / v.near + 1.0 / v.far)
        a = centres[i] - target
        scored = []
        for j, w in enumerate(views):
            if j == i:
                continue
            s = shared.get((min(v.image_id, w.image_id), max(v.image_id, w.image_id)), 0)
            if s == 0:
                continue
            b = centres[j] - target
            ang = np.degrees(np.arccos(np.clip(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12), -1, 1)))
            if ang > max_angle_deg:
                continue
            scored.append((s * min(1.0, ang / min_angle_deg) ** 2, j))
        out.append([j for _, j in sorted(scored, reverse=True)][:n])
    return out


def load_views(rec: pycolmap.Reconstruction, image_dir: Path, opts: MVSOptions) -> list[View]:
    """Registered images of `rec` read from `image_dir`, undistorted and resized to `opts.max_image_size`."""
    views = []
    for image in sorted((im for im in rec.images.values() if im.has_pose), key=lambda im: im.name):
        rng = depth_range(rec, image)
        img = cv2.imread(str(Path(image_dir) / image.name), cv2.IMREAD_COLOR)
        if rng is None or img is None:
            logger.debug("%s: no depth range or unreadable; no depth map", image.name)
            continue
        cam = rec.cameras[image.camera_id]
        if (img.shape[1], img.shape[0]) != (cam.width, cam.height):
            img = cv2.resize(img, (cam.width, cam.height), interpolation=cv2.INTER_AREA)
        img, K = undistort(img, cam)
        s = min(1.0, opts.max_image_size / max(img.shape[:2]))
        if s < 1.0:
            size = (max(8, round(img.shape[1] * s)), max(8, round(img.shape[0] * s)))
            sx, sy = size[0] / img.shape[1], size[1] / img.shape[0]
            img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
            K = np.diag([sx, sy, 1.0]) @ K  # pixel-centre convention: u' = s u
        views.append(View(image.name, image.image_id, cv2.cvtColor(img, cv2.COLOR_BGR2RGB), K,
                          np.asarray(image.cam_from_world().matrix(), dtype=np.float64), *rng))
    shared = covisibility(rec)
    ranked = select_sources(views, shared, max(opts.n_sources, opts.geo_views), opts.max_angle_deg)
    for v, r in zip(views, ranked):
        v.sources, v.neighbours = r[:opts.n_sources], r[:opts.geo_views]
    return views


# ---------------------------------------------------------------- plane sweep

def _grey(rgb: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Grey levels (-128..127) at size (w, h) as a 1 x 1 x h x w tensor."""
    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if (g.shape[1], g.shape[0]) != size:
        g = cv2.resize(g, size, interpolation=cv2.INTER_AREA)
    return torch.from_numpy(g.astype(np.float32) - 128.0).to(device)[None, None]  # centred: see `box`


def box(x: torch.Tensor, k: int) -> torch.Tensor:
    """k x k mean filter of N x 1 x H x W with zero padding (differences of cumulative sums: 4x faster
    than avg_pool2d on CPU; inputs should be centred, as `_grey` makes them, to keep float32 exact)."""
    r = k // 2
    c = F.pad(x, (r + 1, r, r + 1, r)).cumsum(-1)
    c = c[..., k:] - c[..., :-k]
    c = c.cumsum(-2)
    return (c[..., k:, :] - c[..., :-k, :]) * (1.0 / (k * k))


def _scaled_K(K: np.ndarray, src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    return np.diag([dst[0] / src[0], dst[1] / src[1], 1.0]) @ K


def _rays(K: np.ndarray, w: int, h: int, device: torch.device) -> torch.Tensor:
    """3 x h x w camera rays (z = 1) through the pixel centres."""
    Ki = torch.tensor(np.linalg.inv(K), dtype=torch.float32, device=device)
    v, u = torch.meshgrid(torch.arange(h, device=device) + 0.5, torch.arange(w, device=device) + 0.5, indexing="ij")
    pix = torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)
    return (Ki @ pix).reshape(3, h, w)


def _relative(ref: View, src: View, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """src_from_ref rotation and translation."""
    Rr, tr = ref.cam_from_world[:, :3], ref.cam_from_world[:, 3]
    Rs, ts = src.cam_from_world[:, :3], src.cam_from_world[:, 3]
    R = Rs @ Rr.T
    t = ts - R @ tr
    return (torch.tensor(R, dtype=torch.float32, device=device), torch.tensor(t, dtype=torch.float32, device=device))


def _project(K: torch.Tensor, X: torch.Tensor, w: int, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised grid_sample coordinates (... x 2) of camera points 3 x ... and a front/inside mask."""
    z = X[2]
    zs = z.clamp(min=1e-6)
    u = (K[0, 0] * X[0] + K[0, 1] * X[1]) / zs + K[0, 2]
    v = K[1, 1] * X[1] / zs + K[1, 2]
    ok = (z > 1e-6) & (u >= 0) & (u <= w) & (v >= 0) & (v <= h)
    return torch.stack([2 * u / w - 1, 2 * v / h - 1], dim=-1), ok


def sweep(ref: View, srcs: list[View], inv_depth: torch.Tensor, size: tuple[int, int], opts: MVSOptions,
          device: torch.device) -> torch.Tensor:
    """Aggregated ZNCC (D x h x w) of the depth hypotheses 1 / inv_depth (D x h x w) at image size (w, h).

    Pixels whose window is textureless, or that fall outside a source, score -1 for that source.
    """
    w, h = size
    D = inv_depth.shape[0]
    k = opts.window
    I = _grey(ref.rgb, size, device)
    mu_r = box(I, k)
    var_r = (box(I * I, k) - mu_r**2).clamp(min=0)
    textured = var_r[0, 0] >= opts.min_texture**2
    rays = _rays(_scaled_K(ref.K, ref.rgb.shape[1::-1], size), w, h, device).reshape(3, -1)
    depth = 1.0 / inv_depth.clamp(min=1e-9)
    min_var = opts.min_texture**2
    scores = []
    for src in srcs:
        R, t = _relative(ref, src, device)
        ssize = (max(8, round(src.rgb.shape[1] * w / ref.rgb.shape[1])), max(8, round(src.rgb.shape[0] * h / ref.rgb.shape[0])))
        Ks = _scaled_K(src.K, src.rgb.shape[1::-1], ssize)
        # grid_sample coordinates straight from the homogeneous projection: g = (B d + c)_xy / (B d + c)_z
        N = torch.tensor(np.diag([2.0 / ssize[0], 2.0 / ssize[1], 1.0]) @ Ks, dtype=torch.float32, device=device)
        B = (N @ R @ rays).reshape(3, 1, h, w)
        c = (N @ t).reshape(3, 1, 1, 1)
        p = B * depth[None] + c                                    # 3 x D x h x w
        z = p[2]
        gx = p[0] / z - 1
        gy = p[1] / z - 1
        ok = (z > 0) & (gx.abs() <= 1) & (gy.abs() <= 1)
        S = _grey(src.rgb, ssize, device)
        warped = F.grid_sample(S, torch.stack([gx, gy], -1).reshape(1, D * h, w, 2), mode="bilinear",
                               padding_mode="border", align_corners=False).reshape(D, 1, h, w)
        stats = box(torch.cat([warped, warped * warped, warped * I]), k)
        mu_s, ss, rs = stats[:D], stats[D:2 * D], stats[2 * D:]
        var_s = (ss - mu_s * mu_s).clamp_(min=0)
        zncc = (rs - mu_s * mu_r) * torch.rsqrt(var_r * var_s + 1e-3)
        scores.append(torch.where(ok & (var_s[:, 0] >= min_var), zncc[:, 0], -1.0))
    return torch.where(textured[None], mean_top_k(scores, opts.top_k), -1.0)


def mean_top_k(scores: list[torch.Tensor], k: int) -> torch.Tensor:
    """Elementwise mean of the k largest of the given equal-shaped tensors.

    On CPU `topk` over a short leading dimension is about ten times slower than elementwise passes,
    so the usual cases (all, all but the worst, the best one or two) avoid it.
    """
    n = len(scores)
    k = max(1, min(k, n))
    if k == n:
        return torch.stack(scores).mean(0)
    if k == n - 1:  # drop the worst
        s = torch.stack(scores)
        return (s.sum(0) - s.min(0).values) / k
    if k <= 2:  # running best and second best
        first, second = scores[0], torch.full_like(scores[0], float("-inf"))
        for x in scores[1:]:
            second = torch.maximum(second, torch.minimum(first, x))
            first = torch.maximum(first, x)
        return first if k == 1 else (first + second) * 0.5
    return torch.stack(scores).topk(k, dim=0).values.mean(0)


def _winner(inv: torch.Tensor, score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best hypothesis per pixel with a parabolic sub-step fit; (inverse depth, score) h x w.

    Hypotheses must be evenly spaced per pixel along dim 0.
    """
    D = inv.shape[0]
    s0, best = score.max(0, keepdim=True)  # max with indices: several times faster than argmax on CPU
    i_m, i_p = (best - 1).clamp(0, D - 1), (best + 1).clamp(0, D - 1)
    sm, sp = score.gather(0, i_m), score.gather(0, i_p)
    denom = sm - 2 * s0 + sp
    off = torch.where((denom < -1e-6) & (best > 0) & (best < D - 1), 0.5 * (sm - sp) / denom, torch.zeros_like(s0))
    off = off.clamp(-0.5, 0.5)
    step = (inv[-1] - inv[0]) / max(D - 1, 1)
    return (inv.gather(0, best) + off * step)[0], s0[0]


def estimate_depth(ref: View, views: list[View], opts: MVSOptions, device: torch.device) -> DepthMap:
    """Coarse-to-fine plane sweep depth map of one reference view at its working resolution."""
    srcs = [views[j] for j in ref.sources]
    H, W = ref.rgb.shape[:2]
    if not srcs:
        z = np.zeros((H, W), np.float32)
        return DepthMap(z, z - 1, np.zeros((H, W), bool))
    f = max(1, opts.coarse_factor) if opts.refine_planes > 0 and opts.refine_rounds > 0 else 1
    cw, ch = max(8, round(W / f)), max(8, round(H / f))
    lo, hi = 1.0 / ref.far, 1.0 / ref.near
    planes = torch.linspace(lo, hi, opts.n_planes, device=device)
    inv = planes[:, None, None].expand(-1, ch, cw)
    inv_c, score = _winner(inv, sweep(ref, srcs, inv, (cw, ch), opts, device))
    inv_f = inv_c
    if opts.refine_planes > 0 and opts.refine_rounds > 0:
        # Fine level: each round sweeps `refine_planes` hypotheses over +-1 step of the previous
        # round, then shrinks the step. The window of a pixel is warped at its neighbours' own
        # hypotheses, so a round centred on the previous round's raw estimate follows that
        # estimate's per-pixel noise; centred on its local mean (`refine_smooth`) the window
        # follows the surface, and each round then gains (README, "Refinement rounds").
        step = (hi - lo) / max(opts.n_planes - 1, 1)
        inv_f = F.interpolate(inv_c[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]
        P = max(opts.refine_planes, 3)
        for r in range(opts.refine_rounds):
            offs = torch.linspace(-1.0, 1.0, P, device=device) * step
            centre = inv_f
            if r > 0 and opts.refine_smooth > 1:
                k = opts.refine_smooth | 1   # odd: the mean keeps the map's size
                pool = lambda x: F.avg_pool2d(x[None, None], k, stride=1, padding=k // 2, count_include_pad=False)[0, 0]  # noqa: E731
                if opts.refine_confident:
                    # a pixel that failed the last round takes its search centre from the neighbours that
                    # passed it (PatchMatch's propagation, in one step), not from their common noise
                    w = (score >= opts.min_score).float() + 1e-3
                    centre = pool(w * inv_f) / pool(w)
                else:
                    centre = pool(inv_f)
            inv = (centre[None] + offs[:, None, None]).clamp(min=lo * 0.5)
            inv_f, score = _winner(inv, sweep(ref, srcs, inv, (W, H), opts, device))
            step = step * 2.0 / (P - 1)
    depth = (1.0 / inv_f.clamp(min=1e-9)).cpu().numpy().astype(np.float32)
    score_np = score.cpu().numpy().astype(np.float32)
    ok = score_np >= opts.min_score
    return DepthMap(np.where(ok, depth, 0).astype(np.float32), score_np, ok)


# ---------------------------------------------------------------- geometric consistency

def _to_tensor(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float32), device=device)


def geometric_consistency(views: list[View], maps: list[DepthMap], opts: MVSOptions, device: torch.device) -> list[torch.Tensor]:
    """Count, per pixel, the neighbours whose depth maps it re-projects onto, and fuse their points.

    For a pixel with depth d: lift it into the world, project into a neighbour, read the neighbour's
    depth there (nearest), lift that point and project it back; it agrees when it lands within
    `geo_pixel_error` pixels and `geo_depth_error` relative depth. Sets `maps[i].consistent` and
    returns per view the world points (h x w x 3) averaged over the reference and the agreeing views.
    """
    fused = []
    for i, ref in enumerate(views):
        m = maps[i]
        H, W = m.depth.shape
        d = _to_tensor(m.depth, device)
        rays = _rays(ref.K, W, H, device)
        P = _to_tensor(ref.cam_from_world, device)
        Xc = rays * d[None]
        Xw = (P[:, :3].T @ (Xc.reshape(3, -1) - P[:, 3:4])).reshape(3, H, W)
        count = torch.zeros(H, W, device=device)
        acc = Xw.clone()
        Kr = _to_tensor(ref.K, device)
        for j in ref.neighbours:
            nb, nm = views[j], maps[j]
            h2, w2 = nm.depth.shape
            Pn = _to_tensor(nb.cam_from_world, device)
            Kn = _to_tensor(nb.K, device)
            Xn = (Pn[:, :3] @ Xw.reshape(3, -1) + Pn[:, 3:4]).reshape(3, H, W)
            grid, ok = _project(Kn, Xn, w2, h2)
            dn = F.grid_sample(_to_tensor(nm.depth, device)[None, None], grid[None], mode="nearest",
                               padding_mode="zeros", align_corners=False)[0, 0]
            un = (grid[..., 0] + 1) * w2 / 2
            vn = (grid[..., 1] + 1) * h2 / 2
            Kni = torch.linalg.inv(Kn)
            Xb = (Kni @ torch.stack([un, vn, torch.ones_like(un)]).reshape(3, -1)).reshape(3, H, W) * dn[None]
            Xbw = (Pn[:, :3].T @ (Xb.reshape(3, -1) - Pn[:, 3:4])).reshape(3, H, W)
            Xr = (P[:, :3] @ Xbw.reshape(3, -1) + P[:, 3:4]).reshape(3, H, W)
            zr = Xr[2].clamp(min=1e-6)
            ur = Kr[0, 0] * Xr[0] / zr + Kr[0, 2]
            vr = Kr[1, 1] * Xr[1] / zr + Kr[1, 2]
            u0 = torch.arange(W, device=device)[None] + 0.5
            v0 = torch.arange(H, device=device)[:, None] + 0.5
            err_px = torch.sqrt((ur - u0) ** 2 + (vr - v0) ** 2)
            err_d = (Xr[2] - d).abs() / d.clamp(min=1e-6)
            agree = ok & (dn > 0) & (d > 0) & (err_px < opts.geo_pixel_error) & (err_d < opts.geo_depth_error)
            count += agree
            acc += Xbw * agree[None]
        m.consistent = count.to(torch.int32).cpu().numpy()
        fused.append((acc / (count + 1)[None]).permute(1, 2, 0))
    return fused


def run_mvs(rec: pycolmap.Reconstruction, image_dir: Path, opts: MVSOptions,
            progress: bool = False) -> tuple[list[View], list[DepthMap], list[np.ndarray]]:
    """Depth maps of every registered image; returns the views, their maps (with consistency counts)
    and per view the fused world points (h x w x 3, float32)."""
    device = resolve_device(opts.device)
    views = load_views(rec, image_dir, opts)
    it = views
    if progress:
        from tqdm import tqdm

        it = tqdm(views, desc="mvs", unit="img", leave=False)
    with torch.no_grad():
        maps = [estimate_depth(v, views, opts, device) for v in it]
        fused = geometric_consistency(views, maps, opts, device)
    return views, maps, [f.cpu().numpy() for f in fused]
