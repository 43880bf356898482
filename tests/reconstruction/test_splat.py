"""The point splatter: projection to the expected pixel and depth, z-buffer order, batching, splat sizes."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from reconstruction.splat import project_points, splat_points
from reconstruction.views import look_at, view_set

W = H = 64
K = torch.tensor([[100.0, 0.0, 32.0], [0.0, 100.0, 32.0], [0.0, 0.0, 1.0]])
IDENTITY = torch.cat([torch.eye(3), torch.zeros(3, 1)], 1)


def test_point_lands_on_expected_pixel_with_its_depth():
    # u = 100 * 0.105 / 2 + 32 = 37.25 -> column 37 ; v = 100 * -0.2 / 2 + 32 = 22.0 -> row 22.
    pts = torch.tensor([[0.105, -0.2, 2.0]])
    color, depth, mask, index = splat_points(pts, torch.tensor([[1.0, 0.5, 0.25]]), K, IDENTITY, W, H, 1)
    assert mask.shape == (1, H, W) and int(mask.sum()) == 1
    assert bool(mask[0, 22, 37])
    assert depth[0, 22, 37].item() == pytest.approx(2.0)
    assert color[0, 22, 37].tolist() == [1.0, 0.5, 0.25]
    assert index[0, 22, 37].item() == 0 and index[0, 0, 0].item() == -1
    assert depth[0, 0, 0].item() == 0.0


def test_translated_camera_and_orthographic_projection():
    # Camera 5 m behind the origin along -z: a point at the origin has depth 5 and sits at the centre.
    T = IDENTITY.clone()
    T[2, 3] = 5.0
    _, depth, mask, _ = splat_points(torch.zeros(1, 3), torch.ones(1, 3), K, T, W, H, 1)
    assert bool(mask[0, 32, 32]) and depth[0, 32, 32].item() == pytest.approx(5.0)
    # Orthographic, 10 px per metre: (1.0, -0.5) m -> u = 42, v = 27 whatever the depth.
    Ko = torch.tensor([[10.0, 0.0, 32.0], [0.0, 10.0, 32.0], [0.0, 0.0, 1.0]])
    u, v, z = project_points(torch.tensor([[1.0, -0.5, 7.0]]), Ko, IDENTITY, orthographic=True)
    assert (u.item(), v.item(), z.item()) == pytest.approx((42.0, 27.0, 7.0))
    _, depth, mask, _ = splat_points(torch.tensor([[1.05, -0.45, 7.0]]), torch.ones(1, 3), Ko, IDENTITY, W, H, 1,
                                     orthographic=True)
    assert bool(mask[0, 27, 42]) and int(mask.sum()) == 1 and depth[0, 27, 42].item() == pytest.approx(7.0)


def test_nearer_point_wins_whatever_the_order():
    near, far = [0.0, 0.0, 2.0], [0.0, 0.0, 3.0]
    for order in ([near, far], [far, near]):
        pts = torch.tensor(order)
        cols = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
        color, depth, _, index = splat_points(pts, cols, K, IDENTITY, W, H, 3)
        win = 0 if order[0] is near else 1
        assert depth[0, 32, 32].item() == pytest.approx(2.0)
        assert index[0, 32, 32].item() == win
        assert color[0, 32, 32].tolist() == cols[win].tolist()
    # Behind the camera: nothing is drawn.
    _, _, mask, _ = splat_points(torch.tensor([[0.0, 0.0, -2.0]]), torch.ones(1, 3), K, IDENTITY, W, H, 3)
    assert not mask.any()


def test_batched_equals_per_view_and_chunking_is_invisible():
    g = torch.Generator().manual_seed(0)
    pts = torch.rand(5000, 3, generator=g) * 10 - 5
    cols = torch.rand(5000, 3, generator=g)
    cams = view_set(np.zeros(3), 6.0, n_views=5, image_size=W)[1:]  # perspective views
    Kb = torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32)
    Tb = torch.tensor(np.stack([c.cam_from_world for c in cams]), dtype=torch.float32)
    batched = splat_points(pts, cols, Kb, Tb, W, H, 2)
    chunked = splat_points(pts, cols, Kb, Tb, W, H, 2, chunk=777)
    for i in range(len(cams)):
        single = splat_points(pts, cols, Kb[i], Tb[i], W, H, 2)
        for a, b, c in zip(batched, single, chunked):
            assert torch.equal(a[i], b[0]) and torch.equal(a[i], c[i])
    assert batched.mask.float().mean() > 0.3


def test_world_size_splats_grow_with_proximity():
    # 0.1 m at f = 100 px: 5 px at 2 m, 2.5 -> 2 px at 4 m (rounded), capped by max_size.
    def area(z: float, **kw) -> int:
        _, _, mask, _ = splat_points(torch.tensor([[0.0, 0.0, z]]), torch.ones(1, 3), K, IDENTITY, W, H,
                                     world_size=0.1, **kw)
        return int(mask.sum())

    assert area(2.0) == 25
    assert area(4.0) == 4
    assert area(0.5, max_size=8) == 64
    # A world-size splat in an orthographic view does not depend on depth: 0.3 m at 10 px/m = 3 px.
    Ko = torch.tensor([[10.0, 0.0, 32.0], [0.0, 10.0, 32.0], [0.0, 0.0, 1.0]])
    for z in (1.0, 9.0):
        _, _, mask, _ = splat_points(torch.tensor([[0.0, 0.0, z]]), torch.ones(1, 3), Ko, IDENTITY, W, H,
                                     world_size=0.3, orthographic=True)
        assert int(mask.sum()) == 9


def test_pixel_size_blocks_and_non_finite_points():
    pts = torch.tensor([[0.0, 0.0, 2.0], [float("nan"), 0.0, 2.0], [0.1, 0.1, 1.0]])
    _, _, mask, index = splat_points(pts, torch.ones(3, 3), K, IDENTITY, W, H, 3)
    assert int((index == 0).sum()) == 9 and int((index == 2).sum()) == 9
    assert not (index == 1).any()  # the NaN point is dropped, the others keep their input index
    with pytest.raises(ValueError, match="points must be"):
        splat_points(torch.zeros(4, 2), torch.zeros(4, 3), K, IDENTITY, W, H)


def test_look_at_is_a_proper_rotation_pointing_at_the_target():
    eye, target = np.array([10.0, -3.0, 8.0]), np.array([1.0, 2.0, 0.5])
    T = look_at(eye, target)
    R = T[:, :3]
    assert np.allclose(R @ R.T, np.eye(3), atol=1e-9) and math.isclose(np.linalg.det(R), 1.0, abs_tol=1e-9)
    cam = R @ target + T[:, 3]
    assert cam[0] == pytest.approx(0, abs=1e-9) and cam[1] == pytest.approx(0, abs=1e-9)
    assert cam[2] == pytest.approx(np.linalg.norm(target - eye))
    # World up appears as image up (negative y) for a camera that is not looking straight down.
    up = R @ np.array([0.0, 0.0, 1.0])
    assert up[1] < 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu():
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(20000, 3, generator=g) * 10 - 5
    cols = torch.rand(20000, 3, generator=g)
    cams = view_set(np.zeros(3), 6.0, n_views=4, image_size=W)[1:]
    Kb = torch.tensor(np.stack([c.K for c in cams]), dtype=torch.float32)
    Tb = torch.tensor(np.stack([c.cam_from_world for c in cams]), dtype=torch.float32)
    cpu = splat_points(pts, cols, Kb, Tb, W, H, 2)
    gpu = splat_points(pts.cuda(), cols.cuda(), Kb.cuda(), Tb.cuda(), W, H, 2)
    # Projection may differ in the last float bit on the GPU: compare the visible sets, allow a few pixels.
    assert (cpu.mask != gpu.mask.cpu()).float().mean() < 0.01
    same = cpu.mask & gpu.mask.cpu()
    assert torch.allclose(cpu.depth[same], gpu.depth.cpu()[same], rtol=1e-4)
