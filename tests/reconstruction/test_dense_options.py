"""Opt-in dense options added after 3D caches were built: the geometric-consistency tolerances.

At their defaults they are today's MVSOptions and drop out of the cache key; set, they reach the
consistency check and decide which depths agree.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from reconstruction.config import ReconstructConfig
from reconstruction.dense import mvs_options
from reconstruction.mvs import DepthMap, MVSOptions, View, geometric_consistency
from retrieval.config import key_dict

NEW = ("mvs_geo_pixel_error", "mvs_geo_depth_error")


def test_defaults_keep_todays_options_and_cache_key():
    cfg = ReconstructConfig()
    opts, plain = mvs_options(cfg), MVSOptions()
    assert (opts.geo_pixel_error, opts.geo_depth_error) == (plain.geo_pixel_error, plain.geo_depth_error)
    key = key_dict(cfg)
    assert not any(k in key for k in NEW)
    loose = dataclasses.replace(cfg, mvs_geo_pixel_error=2.0, mvs_geo_depth_error=0.008)
    assert key_dict(loose)["mvs_geo_depth_error"] == 0.008 and key_dict(loose)["mvs_geo_pixel_error"] == 2.0
    assert (mvs_options(loose).geo_pixel_error, mvs_options(loose).geo_depth_error) == (2.0, 0.008)


def _view(i: int, x: float) -> View:
    K = np.array([[50.0, 0, 32], [0, 50.0, 32], [0, 0, 1]])
    P = np.hstack([np.eye(3), [[-x], [0.0], [0.0]]])  # camera at (x, 0, 0) looking down +z
    return View(f"v{i}", i, np.zeros((64, 64, 3), np.uint8), K, P, 5.0, 20.0, neighbours=[1 - i])


def test_depth_tolerance_decides_agreement():
    """Two views of the plane z = 10; the second's depth map is 0.6% too deep: it agrees only under a
    relative depth tolerance above 0.6%."""
    views = [_view(0, 0.0), _view(1, 1.0)]

    def agreeing(depth_error: float) -> float:
        maps = [DepthMap(np.full((64, 64), d, np.float32), np.ones((64, 64), np.float32), np.ones((64, 64), bool))
                for d in (10.0, 10.06)]
        opts = mvs_options(ReconstructConfig(mvs_device="cpu", mvs_geo_pixel_error=2.0, mvs_geo_depth_error=depth_error))
        geometric_consistency(views, maps, opts, torch.device("cpu"))
        return float((maps[0].consistent >= 1).mean())

    assert agreeing(0.004) == 0.0
    assert agreeing(0.008) > 0.5
