"""Geometric targets: shape figures of a DSM that do not change when it turns, and that tell a tall
building from a low one and a long one from a square one."""
import json

import numpy as np
import pytest

from retrieval.geometry_targets import NAMES, dsm_figures, geometry_targets


def _box(h: float, w: int, d: int, size: int = 64) -> np.ndarray:
    dsm = np.zeros((size, size), np.float32)
    dsm[size // 2 - d // 2: size // 2 + d // 2, size // 2 - w // 2: size // 2 + w // 2] = h
    return dsm


def test_figures_do_not_change_when_the_dsm_turns():
    dsm = _box(3.0, 30, 12)
    dsm[28:32, 20:26] = 5.0    # a tower on the roof
    f = dsm_figures(dsm, 0.5)
    for k in (1, 2, 3):
        np.testing.assert_allclose(dsm_figures(np.rot90(dsm, k), 0.5), f, atol=1e-5)
    np.testing.assert_allclose(dsm_figures(dsm[:, ::-1], 0.5), f, atol=1e-5)


def test_figures_measure_height_size_and_elongation():
    square, tall, long_ = dsm_figures(_box(3, 20, 20), 1), dsm_figures(_box(9, 20, 20), 1), dsm_figures(_box(3, 40, 10), 1)
    i = {n: k for k, n in enumerate(NAMES)}
    assert tall[i["log_top"]] == pytest.approx(square[i["log_top"]] + np.log(3), abs=1e-4)
    assert square[i["log_footprint"]] == pytest.approx(np.log(400), abs=1e-4)
    assert square[i["elongation"]] == pytest.approx(1.0, abs=0.05)
    assert long_[i["elongation"]] == pytest.approx(0.25, abs=0.05)
    assert square[i["fill"]] == pytest.approx(1.0) and square[i["upper_share"]] == pytest.approx(1.0)
    empty = dsm_figures(np.zeros((8, 8)), 1)
    assert np.isfinite(empty).all()


def test_targets_are_standardised_over_the_buildings_with_a_dsm(tmp_path):
    for b, h in (("0001", 2.0), ("0002", 4.0), ("0003", 8.0)):
        sd = tmp_path / b / "scale1"
        sd.mkdir(parents=True)
        np.save(sd / "dsm.npy", _box(h, 20, 10).astype(np.float16))
        (sd / "cameras.json").write_text(json.dumps({"dsm": {"gsd": 0.5}}))
    (tmp_path / "0004" / "scale1").mkdir(parents=True)   # no DSM: no target
    t = geometry_targets(tmp_path, ["0001", "0002", "0003", "0004"], 1)
    assert sorted(t) == ["0001", "0002", "0003"]
    top = np.array([t[b][0] for b in sorted(t)])
    assert top.mean() == pytest.approx(0.0, abs=1e-5) and top[0] < top[1] < top[2]
    (tmp_path / "0003" / "scale1" / "cameras.json").write_text("{")
    with pytest.raises(ValueError, match="0003/scale1: cannot read the DSM"):
        geometry_targets(tmp_path, ["0001", "0003"], 1)
