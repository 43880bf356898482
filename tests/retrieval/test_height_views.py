"""Height views must carry how tall a building is in whatever unit its scene has: without GPS the
reconstruction's unit is the drone orbit's radius, and a fixed metric range (50 m) left every height
view flat grey."""
from pathlib import Path

import numpy as np

from retrieval.train_data import _view_image, auto_height_range


def _fake_renders(root: Path, tops: dict[str, float]) -> None:
    """One scale, two views per building: a block of height `top` (scene units) on empty ground."""
    for bid, top in tops.items():
        d = root / bid / "scale1"
        d.mkdir(parents=True)
        for v in range(2):
            h = np.zeros((32, 32), np.float16)
            h[8:24, 8:24] = top
            h[8:24, 16:24] = top / 2
            depth = np.where(h > 0, 3.0, 0.0).astype(np.float16)
            np.save(d / f"view{v:02d}_height.npy", h)
            np.save(d / f"view{v:02d}_depth.npy", depth)


def test_auto_range_follows_the_scene_unit(tmp_path):
    tops = {f"b{i}": 0.1 + 0.02 * i for i in range(10)}    # orbit-radius units: all well below 1
    _fake_renders(tmp_path, tops)
    rng = auto_height_range(tmp_path, list(tops), (1,))
    assert 0.25 < rng < 0.3   # ~ the 95th percentile of the tops (0.1 .. 0.28)


def test_height_view_is_not_flat_in_orbit_units(tmp_path):
    _fake_renders(tmp_path, {"b0": 0.2})
    files = {"height": tmp_path / "b0/scale1/view00_height.npy", "depth": tmp_path / "b0/scale1/view00_depth.npy"}
    flat = _view_image(files, "height", 32, 50.0)[..., 0]          # the old metric range
    assert np.ptp(flat[8:24, 8:24]) <= 1                            # what the defect looked like: flat grey
    img = _view_image(files, "height", 32, auto_height_range(tmp_path, ["b0"], (1,)))[..., 0]
    tall, low = int(img[12, 10]), int(img[12, 20])
    assert tall > low + 80 and img[0, 0] == 0                       # two roof levels told apart; empty stays black


def test_no_renders_gives_a_neutral_range(tmp_path):
    assert auto_height_range(tmp_path, ["missing"], (1,)) == 1.0


def test_auto_range_is_read_once_while_the_renders_stay_the_same(tmp_path, monkeypatch):
    """Caching render features again reuses the auto height range instead of re-reading every height
    map; a changed render computes it afresh (and re-encodes, since the range changed)."""
    import retrieval.train_data as td

    tops = {f"b{i}": 0.1 + 0.02 * i for i in range(4)}
    _fake_renders(tmp_path / "renders", tops)
    calls = []
    monkeypatch.setattr(td, "auto_height_range", lambda *a, **k: calls.append(1) or auto_height_range(*a, **k))
    cache = lambda: td.cache_render_features(tmp_path / "renders", list(tops), tmp_path / "feats",  # noqa: E731
                                             scales=(1,), modalities=("height",), image_size=32, device="cpu")
    first = cache()
    assert len(calls) == 1 and len(first) == 4
    before = {b: p.stat().st_mtime_ns for b, p in first.items()}
    cache()
    assert len(calls) == 1
    assert {b: p.stat().st_mtime_ns for b, p in first.items()} == before
    h = np.load(tmp_path / "renders/b3/scale1/view00_height.npy")
    np.save(tmp_path / "renders/b3/scale1/view00_height.npy", h * 4)
    cache()
    assert len(calls) == 2
