"""Look at a reconstructed scene: its point cloud and camera frustums in the Open3D viewer, or a headless PNG.

The screenshot uses Open3D's `OffscreenRenderer` (Filament; headless it needs Vulkan, i.e. the
Debian packages `libvulkan1 mesa-vulkan-drivers`, which give the llvmpipe software device). Where
that renderer is unavailable, the screenshot falls back to our own point splatter with the
frustums drawn by OpenCV, and says so in the log.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger("skylink")

SCALE_COLOURS = {1: (0.85, 0.15, 0.15), 2: (0.95, 0.6, 0.1), 3: (0.15, 0.45, 0.9)}  # frustums of the shown scale
OTHER_COLOUR = (0.55, 0.55, 0.55)


def load_cameras(scene_dir: Path) -> list[dict]:
    """Registered cameras of the scene's COLMAP model (`sparse/`): name, K, cam_from_world 3x4, size."""
    from reconstruction.framing import registered_cameras

    cams = registered_cameras(scene_dir)
    if not cams:
        log.warning("%s: no COLMAP model; showing the points without cameras", Path(scene_dir) / "sparse")
    return cams


def camera_groups(names: list[str], n_scales: int = 3) -> dict[str, int]:
    """Altitude group of each image, as the reconstruction assigned them (University-1652 numbering)."""
    from reconstruction.multiscale import default_groups

    return default_groups(names, n_scales) if names else {}


def scene_geometries(scene_dir: Path, scale: int = 1) -> tuple[list, dict]:
    """Open3D geometries (the scale's point cloud, one LineSet frustum per camera) and facts about them."""
    import open3d as o3d

    scene_dir = Path(scene_dir)
    ply = scene_dir / f"scale{scale}.ply"
    if not ply.is_file():
        have = sorted(p.name for p in scene_dir.glob("scale*.ply"))
        raise FileNotFoundError(f"{ply}: not found (the scene has {', '.join(have) or 'no point clouds'})")
    pcd = o3d.io.read_point_cloud(str(ply))
    cams = load_cameras(scene_dir)
    groups = camera_groups([c["name"] for c in cams])
    pts = np.asarray(pcd.points)
    centres = np.array([-c["cam_from_world"][:, :3].T @ c["cam_from_world"][:, 3] for c in cams]).reshape(-1, 3)
    extent = np.r_[pts, centres] if len(pts) or len(centres) else np.zeros((1, 3))
    size = float(np.linalg.norm(extent.max(0) - extent.min(0))) or 1.0
    geoms = [pcd]
    for c, centre in zip(cams, centres):
        ext = np.eye(4)
        ext[:3, :] = c["cam_from_world"]
        ls = o3d.geometry.LineSet.create_camera_visualization(int(c["width"]), int(c["height"]), c["K"], ext,
                                                               scale=0.04 * size)
        ls.paint_uniform_color(SCALE_COLOURS.get(scale, (1, 0, 0)) if groups.get(c["name"]) == scale else OTHER_COLOUR)
        geoms.append(ls)
    info = {"points": len(pts), "cameras": len(cams), "cameras_in_scale": sum(1 for g in groups.values() if g == scale),
            "size": size, "centre": (extent.min(0) + extent.max(0)) / 2, "extent_min": extent.min(0),
            "extent_max": extent.max(0), "camera_centres": centres}
    return geoms, info


def _view_pose(info: dict, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Eye and target of an oblique overview (from the south-west, 35 degrees up) framing everything."""
    target = info["centre"]
    radius = 0.5 * info["size"]
    dist = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    el, az = math.radians(35.0), math.radians(-120.0)
    eye = target + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    return eye, target


def screenshot_open3d(geoms: list, info: dict, path: Path, width: int, height: int, fov_deg: float = 50.0) -> None:
    from open3d.visualization import rendering

    renderer = rendering.OffscreenRenderer(width, height)
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    # Filament's default tone mapping washes out unlit colours; the points should look as stored.
    renderer.scene.view.set_post_processing(False)
    pts = rendering.MaterialRecord()
    pts.shader = "defaultUnlit"
    pts.point_size = 3.0
    lines = rendering.MaterialRecord()
    lines.shader = "unlitLine"
    lines.line_width = 1.5
    for i, g in enumerate(geoms):
        renderer.scene.add_geometry(f"g{i}", g, pts if i == 0 else lines)
    eye, target = _view_pose(info, fov_deg)
    renderer.setup_camera(fov_deg, target.tolist(), eye.tolist(), [0.0, 0.0, 1.0])
    import open3d as o3d

    img = renderer.render_to_image()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not o3d.io.write_image(str(path), img):
        raise OSError(f"{path}: could not write the screenshot")


def screenshot_splat(geoms: list, info: dict, path: Path, width: int, height: int, fov_deg: float = 50.0) -> None:
    """Fallback screenshot: our own splatter for the points, OpenCV lines for the frustums."""
    import cv2
    import torch

    from reconstruction.splat import splat_points
    from reconstruction.views import look_at

    eye, target = _view_pose(info, fov_deg)
    T = look_at(eye, target)
    f = (height / 2) / math.tan(math.radians(fov_deg) / 2)
    K = np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]])
    pcd = geoms[0]
    xyz = torch.tensor(np.asarray(pcd.points), dtype=torch.float32)
    rgb = torch.tensor(np.asarray(pcd.colors) if pcd.has_colors() else np.full((len(xyz), 3), 0.4), dtype=torch.float32)
    img = np.full((height, width, 3), 255, np.uint8)
    if len(xyz):
        r = splat_points(xyz, rgb, torch.tensor(K, dtype=torch.float32), torch.tensor(T, dtype=torch.float32),
                         width, height, 3)
        col = (r.color[0].numpy() * 255).clip(0, 255).astype(np.uint8)
        img[r.mask[0].numpy()] = col[r.mask[0].numpy()]
    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    for ls in geoms[1:]:
        p = np.asarray(ls.points)
        cam = p @ T[:, :3].T + T[:, 3]
        if (cam[:, 2] <= 1e-6).any():
            continue
        uv = (cam @ K.T)[:, :2] / cam[:, 2:3]
        colour = tuple(int(255 * c) for c in np.asarray(ls.colors)[0][::-1])
        for a, b in np.asarray(ls.lines):
            cv2.line(img, tuple(int(v) for v in uv[a]), tuple(int(v) for v in uv[b]), colour, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the screenshot")


def inspect(scene_dir: Path, scale: int = 1, screenshot: Path | None = None, *, size: tuple[int, int] = (1280, 960),
            backend: str = "auto") -> dict:
    """Show scene_dir's `scale{scale}.ply` with the camera frustums of `sparse/`.

    Frustums of the images of altitude group `scale` are coloured, the others grey. With `screenshot`
    a PNG is rendered headless instead of opening a window: backend "open3d" (OffscreenRenderer),
    "splat" (our renderer + OpenCV) or "auto" (open3d, falling back to splat). Returns facts about
    the scene and, for a screenshot, the backend used.
    """
    if backend not in ("auto", "open3d", "splat"):
        raise ValueError(f"backend must be auto, open3d or splat, got {backend!r}")
    geoms, info = scene_geometries(Path(scene_dir), scale)
    facts = {"points": info["points"], "cameras": info["cameras"], "cameras_in_scale": info["cameras_in_scale"]}
    if screenshot is None:
        import os

        import open3d as o3d

        if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("no display for the Open3D viewer (DISPLAY is not set); use --screenshot FILE")

        ok = o3d.visualization.draw_geometries(geoms, window_name=f"SkyLink {Path(scene_dir).name} scale {scale}",
                                               width=size[0], height=size[1])
        if ok is False:
            raise RuntimeError("the Open3D viewer could not open a window (no display?); use --screenshot FILE")
        return facts
    screenshot = Path(screenshot)
    if backend == "open3d":
        screenshot_open3d(geoms, info, screenshot, *size)
        return facts | {"backend": "open3d", "screenshot": str(screenshot)}
    if backend == "auto":
        # Filament aborts the whole process when it finds no Vulkan/EGL device, so try it in a child.
        error = _open3d_in_child(Path(scene_dir), scale, screenshot, size)
        if error is None:
            return facts | {"backend": "open3d", "screenshot": str(screenshot)}
        log.warning("Open3D OffscreenRenderer unavailable (%s); screenshot drawn with the point splatter instead", error)
    screenshot_splat(geoms, info, screenshot, *size)
    return facts | {"backend": "splat", "screenshot": str(screenshot)}


def _open3d_in_child(scene_dir: Path, scale: int, screenshot: Path, size: tuple[int, int]) -> str | None:
    """Run the Open3D screenshot in a child process; None on success, else the reason it failed."""
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "reconstruction.inspect", str(scene_dir), "--scale", str(scale),
           "--screenshot", str(screenshot), "--size", str(size[0]), str(size[1]), "--backend", "open3d"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        return "timed out after 300 s"
    if proc.returncode == 0 and screenshot.is_file():
        return None
    lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip() and not ln.startswith("    @")]
    reason = next((ln for ln in lines if "reason:" in ln or "Error" in ln), lines[-1] if lines else "")
    return f"exit code {proc.returncode}: {reason.strip()[:200]}"


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Show a reconstructed scene (point cloud + camera frustums).")
    ap.add_argument("scene_dir", type=Path)
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--screenshot", type=Path, default=None)
    ap.add_argument("--size", type=int, nargs=2, default=(1280, 960), metavar=("W", "H"))
    ap.add_argument("--backend", default="auto", choices=("auto", "open3d", "splat"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    facts = inspect(args.scene_dir, args.scale, args.screenshot, size=tuple(args.size), backend=args.backend)
    log.info("%s", facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
