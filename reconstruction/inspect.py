"""Look at a reconstructed scene: its point cloud framed on the target building (with the sparse cloud, the
mesh and the camera frustums as options) in the Open3D viewer, or a headless PNG.

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

from reconstruction.mesh import MESH

log = logging.getLogger("skylink")

SCALE_COLOURS = {1: (0.85, 0.15, 0.15), 2: (0.95, 0.6, 0.1), 3: (0.15, 0.45, 0.9)}  # frustums of the shown scale
OTHER_COLOUR = (0.55, 0.55, 0.55)
# Software Vulkan (llvmpipe) drew a dense cloud and a mesh in 20 s on the idle 2 cores, but took over
# 300 s beside `make demo`; past this the splatter draws the screenshot instead.
OPEN3D_TIMEOUT_S = 120


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


def panel_clouds(scene_dir: Path, scale: int, sparse: bool, mesh: bool) -> list[tuple[str, Path]]:
    """The panels to show side by side: the scale's cloud (dense where the reconstruction built one),
    its sparse cloud (`sparse_scale{k}.ply`) and the mesh (`mesh.ply`) when asked for and present."""
    scene_dir = Path(scene_dir)
    sparse_ply = scene_dir / f"sparse_scale{scale}.ply"
    main = "dense" if sparse_ply.is_file() else "points"
    panels = [(f"{main} scale {scale}", scene_dir / f"scale{scale}.ply")]
    if sparse:
        if sparse_ply.is_file():
            panels.append((f"sparse scale {scale}", sparse_ply))
        else:
            log.warning("%s: not found (no dense cloud was built); showing scale%d.ply alone", sparse_ply, scale)
    if mesh:
        if (scene_dir / MESH).is_file():
            panels.append(("mesh", scene_dir / MESH))
        else:
            log.warning("%s: not found (the reconstruct stage builds it with --set reconstruct.dense_mesh=true)",
                        scene_dir / MESH)
    return panels


def building_view(scene_dir: Path, info: dict, width: int, height: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """K and cam_from_world of an oblique view (from the south-west, 35 degrees up) framing the target building.

    The building is the one the render stage frames (reconstruction.framing): on the orbit axis of
    the registered cameras, as far as its structure reaches.
    """
    from reconstruction.config import RenderConfig
    from reconstruction.render import building_frame, load_points
    from reconstruction.views import framed_camera

    # All scales together, as the render stage frames them (sparse_scale*.ply are the same points, sparser).
    clouds = [load_points(p)[0] for p in sorted(Path(scene_dir).glob("scale*.ply"))]
    xyz = np.concatenate(clouds) if clouds else np.zeros((0, 3), np.float32)
    if len(xyz) < 10:
        return overview_view(info, width, height, fov_deg)
    frame = building_frame(xyz, load_cameras(scene_dir), RenderConfig())
    size = min(width, height)
    cam = framed_camera(frame["target"], frame["corners"], -120.0, 35.0, size, fov_deg, "oblique", "inspect",
                        margin=1.15)
    K = cam.K.copy()
    K[0, 2] += (width - size) / 2.0
    K[1, 2] += (height - size) / 2.0
    return K, cam.cam_from_world


def overview_view(info: dict, width: int, height: int, fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """K and cam_from_world of an oblique overview (from the south-west, 35 degrees up) framing the
    points and every camera."""
    from reconstruction.views import look_at

    target = info["centre"]
    radius = 0.5 * info["size"]
    dist = radius / math.sin(math.radians(fov_deg) / 2) * 1.05
    el, az = math.radians(35.0), math.radians(-120.0)
    eye = target + dist * np.array([math.cos(el) * math.cos(az), math.cos(el) * math.sin(az), math.sin(el)])
    f = (min(width, height) / 2) / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1.0]]), look_at(eye, target)


def point_size_for(n_points: int, width: int, height: int) -> float:
    """Splat size (pixels) that lets a sparse cloud read as surfaces without blurring a dense one."""
    return float(np.clip(0.8 * math.sqrt(width * height / max(n_points, 1)), 3.0, 10.0))


def screenshot_open3d(geoms: list, K: np.ndarray, T: np.ndarray, path: Path, width: int, height: int) -> None:
    import open3d as o3d
    from open3d.visualization import rendering

    renderer = rendering.OffscreenRenderer(width, height)
    renderer.scene.set_background([1.0, 1.0, 1.0, 1.0])
    # Filament's default tone mapping washes out unlit colours; the points should look as stored.
    renderer.scene.view.set_post_processing(False)
    for i, g in enumerate(geoms):
        mat = rendering.MaterialRecord()
        if isinstance(g, o3d.geometry.LineSet):
            mat.shader, mat.line_width = "unlitLine", 1.5
        elif isinstance(g, o3d.geometry.TriangleMesh):
            mat.shader = "defaultLit"
        else:
            mat.shader, mat.point_size = "defaultUnlit", point_size_for(len(g.points), width, height)
        renderer.scene.add_geometry(f"g{i}", g, mat)
    if any(isinstance(g, o3d.geometry.TriangleMesh) for g in geoms):
        renderer.scene.scene.set_sun_light([0.3, 0.6, -1.0], [1.0, 1.0, 1.0], 75000)
        renderer.scene.scene.enable_sun_light(True)
    ext = np.eye(4)
    ext[:3, :] = T
    renderer.setup_camera(K, ext, width, height)
    img = np.asarray(renderer.render_to_image())
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the screenshot")


def _mesh_image(mesh, K: np.ndarray, T: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast a triangle mesh: RGB float [H,W,3] shaded by its vertex colours and the normals, and the hit mask."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        o3d.core.Tensor(K), o3d.core.Tensor(np.r_[T, [[0, 0, 0, 1]]]), width, height)
    ans = scene.cast_rays(rays)
    hit = np.isfinite(ans["t_hit"].numpy())
    tri = np.asarray(mesh.triangles)[np.where(hit, ans["primitive_ids"].numpy(), 0).astype(np.int64)]
    col = np.asarray(mesh.vertex_colors)[tri[..., 0]] if mesh.has_vertex_colors() else np.full(hit.shape + (3,), 0.7)
    n = ans["primitive_normals"].numpy()
    shade = 0.45 + 0.55 * np.abs(n @ (np.array([0.3, 0.6, 1.0]) / np.linalg.norm([0.3, 0.6, 1.0])))
    return np.clip(col * shade[..., None], 0, 1), hit


def screenshot_splat(geoms: list, K: np.ndarray, T: np.ndarray, path: Path, width: int, height: int) -> None:
    """Fallback screenshot: our own splatter for the points, a ray caster for a mesh, OpenCV lines for the frustums."""
    import cv2
    import open3d as o3d
    import torch

    from reconstruction.splat import splat_points

    img = np.full((height, width, 3), 255, np.uint8)
    for g in geoms:
        if isinstance(g, o3d.geometry.TriangleMesh):
            col, hit = _mesh_image(g, K, T, width, height)
            img[hit] = (col[hit] * 255).astype(np.uint8)
        elif isinstance(g, o3d.geometry.PointCloud) and len(g.points):
            xyz = torch.tensor(np.asarray(g.points), dtype=torch.float32)
            rgb = torch.tensor(np.asarray(g.colors) if g.has_colors() else np.full((len(xyz), 3), 0.4), dtype=torch.float32)
            size = int(round(point_size_for(len(xyz), width, height)))
            r = splat_points(xyz, rgb, torch.tensor(K, dtype=torch.float32), torch.tensor(T, dtype=torch.float32),
                             width, height, size)
            col = (r.color[0].numpy() * 255).clip(0, 255).astype(np.uint8)
            img[r.mask[0].numpy()] = col[r.mask[0].numpy()]
    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    for ls in geoms:
        if not isinstance(ls, o3d.geometry.LineSet):
            continue
        p = np.asarray(ls.points)
        cam = p @ T[:, :3].T + T[:, 3]
        if (cam[:, 2] <= 1e-6).any():
            continue
        uv = (cam @ K.T)[:, :2] / cam[:, 2:3]
        if np.abs(uv).max() > 1e5:
            continue
        colour = tuple(int(255 * c) for c in np.asarray(ls.colors)[0][::-1])
        for a, b in np.asarray(ls.lines):
            cv2.line(img, tuple(int(v) for v in uv[a]), tuple(int(v) for v in uv[b]), colour, 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"{path}: could not write the screenshot")


def _panel_geometries(path: Path, frustums: list):
    import open3d as o3d

    if path.name == MESH:
        mesh = o3d.io.read_triangle_mesh(str(path))
        mesh.compute_vertex_normals()
        return [mesh] + frustums
    return [o3d.io.read_point_cloud(str(path))] + frustums


def inspect(scene_dir: Path, scale: int = 1, screenshot: Path | None = None, *, size: tuple[int, int] = (1280, 960),
            backend: str = "auto", frustums: bool = False, sparse: bool = False, mesh: bool = False,
            fov_deg: float = 50.0) -> dict:
    """Show scene_dir's `scale{scale}.ply`, framed on the target building.

    With `frustums` the camera frustums of `sparse/` are drawn too (those of altitude group `scale`
    coloured, the others grey) and the view pulls back to hold them. `sparse` adds a panel with the
    sparse cloud (`sparse_scale{scale}.ply`), `mesh` one with `mesh.ply`, side by side (skipped with a
    warning where absent). With `screenshot` a PNG is rendered headless instead of opening a window:
    backend "open3d" (OffscreenRenderer), "splat" (our renderer + OpenCV) or "auto" (open3d, falling
    back to splat). Returns facts about the scene and, for a screenshot, the backend used.
    """
    if backend not in ("auto", "open3d", "splat"):
        raise ValueError(f"backend must be auto, open3d or splat, got {backend!r}")
    scene_dir = Path(scene_dir)
    geoms, info = scene_geometries(scene_dir, scale)
    info["scale"] = scale
    cams = geoms[1:] if frustums else []
    panels = panel_clouds(scene_dir, scale, sparse, mesh)
    facts = {"points": info["points"], "cameras": info["cameras"], "cameras_in_scale": info["cameras_in_scale"],
             "panels": [name for name, _ in panels]}
    width, height = size
    if screenshot is None:
        import os

        import open3d as o3d

        if os.name == "posix" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("no display for the Open3D viewer (DISPLAY is not set); use --screenshot FILE")
        shown = []
        shift = 1.2 * float(np.ptp(np.asarray(geoms[0].points)[:, 0])) if info["points"] else 0.0
        for i, (_, path) in enumerate(panels):  # side by side along x
            for g in _panel_geometries(path, cams if i == 0 else []):
                shown.append(g.translate((i * shift, 0.0, 0.0)))
        ok = o3d.visualization.draw_geometries(shown, window_name=f"SkyLink {scene_dir.name} scale {scale}",
                                               width=width, height=height)
        if ok is False:
            raise RuntimeError("the Open3D viewer could not open a window (no display?); use --screenshot FILE")
        return facts
    screenshot = Path(screenshot)
    if backend == "auto":
        # Filament aborts the whole process when it finds no Vulkan/EGL device, so try it in a child.
        log.info("drawing with Open3D's OffscreenRenderer (up to %d s on a busy machine; --backend splat skips it)",
                 OPEN3D_TIMEOUT_S)
        error = _open3d_in_child(scene_dir, scale, screenshot, size, frustums, sparse, mesh)
        if error is None:
            return facts | {"backend": "open3d", "screenshot": str(screenshot)}
        log.warning("Open3D OffscreenRenderer unavailable (%s); screenshot drawn with the point splatter instead", error)
        backend = "splat"
    pw = width // len(panels)
    if frustums:
        K, T = overview_view(info, pw, height, fov_deg)
    else:
        K, T = building_view(scene_dir, info, pw, height, fov_deg)
    draw = screenshot_open3d if backend == "open3d" else screenshot_splat
    import tempfile

    import cv2

    tiles = []
    with tempfile.TemporaryDirectory(prefix="skylink-inspect-") as tmp:
        for i, (name, path) in enumerate(panels):
            out = Path(tmp) / f"{i}.png"
            draw(_panel_geometries(path, cams), K, T, out, pw, height)
            tile = cv2.imread(str(out))
            if len(panels) > 1:
                cv2.putText(tile, name, (10, 28), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (40, 40, 40), 2, cv2.LINE_AA)
            tiles.append(tile)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(screenshot), np.hstack(tiles)):
        raise OSError(f"{screenshot}: could not write the screenshot")
    return facts | {"backend": backend, "screenshot": str(screenshot)}


def _open3d_in_child(scene_dir: Path, scale: int, screenshot: Path, size: tuple[int, int], frustums: bool = False,
                     sparse: bool = False, mesh: bool = False) -> str | None:
    """Run the Open3D screenshot in a child process; None on success, else the reason it failed."""
    import os
    import subprocess
    import sys

    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "reconstruction.inspect", str(scene_dir), "--scale", str(scale),
           "--screenshot", str(screenshot), "--size", str(size[0]), str(size[1]), "--backend", "open3d"]
    cmd += [flag for flag, on in (("--frustums", frustums), ("--sparse", sparse), ("--mesh", mesh)) if on]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=OPEN3D_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"timed out after {OPEN3D_TIMEOUT_S} s"
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
    ap.add_argument("--frustums", action="store_true", help="draw the camera frustums (the view holds them all)")
    ap.add_argument("--sparse", action="store_true", help="the sparse cloud beside the dense one")
    ap.add_argument("--mesh", action="store_true", help="the mesh (mesh.ply) beside the clouds")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    facts = inspect(args.scene_dir, args.scale, args.screenshot, size=tuple(args.size), backend=args.backend,
                    frustums=args.frustums, sparse=args.sparse, mesh=args.mesh)
    log.info("%s", facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
