"""Cross-check of two SfM models of the same images: the global mapper's model, confirmed by the incremental one.

COLMAP's global mapper places cameras more accurately than the incremental one on most buildings
(camera error about a third lower on the validation world's towers), but on some it returns a model
that is broken outright (demo building 0703: median relative rotation error 56 degrees) or places a
few weakly matched images far off (one camera 100 orbit radii away). The incremental mapper fails
differently: it registers fewer images, and on symmetric buildings puts an occasional image at its
mirror position on the orbit. Both run on the same database (features and matches are shared; mapping
both costs 1.4 s for a 27-image flight, 13 s for a 54-image one on 2 cores) and each model checks the
other:

* their camera centres are compared after a robust similarity (the models have arbitrary frames);
* when fewer than `min_agreement` of the common cameras agree, the global model is broken and the
  incremental one is kept whole;
* otherwise the global model is kept without the cameras the two place differently (which of the two
  is wrong cannot be told from the images, so neither is trusted there); `sfm` then registers those
  images again, against the checked model's points (`reconstruct.mapper_reregister`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pycolmap

from reconstruction.align import camera_centres, estimate_similarity, sim3_apply

logger = logging.getLogger("skylink")


@dataclass
class MapperCheck:
    """What the cross-check decided, for quality.json."""

    kept: str                      # global | incremental
    reason: str
    common: int = 0                # images both models registered
    agreeing: int = 0              # of those, placed alike (within `tol` of the scene's scale)
    dropped: list[str] = field(default_factory=list)  # disputed images removed from the kept model
    registered: dict[str, int] = field(default_factory=dict)  # per mapper
    # sfm._reregister: dropped images registered again into the checked model, and images neither had
    reregistered: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    # models that disagree too much: per mapper, the cameras that follow the flight's order
    flight_consistent: dict[str, int] = field(default_factory=dict)

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.common if self.common else None

    def to_dict(self) -> dict:
        return {"kept": self.kept, "reason": self.reason, "common": self.common, "agreeing": self.agreeing,
                "agreement": self.agreement, "dropped": self.dropped, "registered": self.registered,
                "reregistered": self.reregistered, "added": self.added,
                **({"flight_consistent": self.flight_consistent} if self.flight_consistent else {})}


def scene_scale(centres: np.ndarray) -> float:
    """Median distance of camera centres from their median: the orbit's size in the model's unit."""
    return float(np.median(np.linalg.norm(centres - np.median(centres, axis=0), axis=1)))


def camera_disagreement(a: pycolmap.Reconstruction, b: pycolmap.Reconstruction, tol: float = 0.05,
                        seed: int = 0) -> dict[str, float]:
    """For each image registered in both, the distance between its centres once `a` is mapped onto `b`,
    as a share of `b`'s scene scale (a robust similarity with inliers within `tol`, so that a few misplaced
    cameras do not bend it)."""
    ca, cb = camera_centres(a), camera_centres(b)
    common = sorted(set(ca) & set(cb))
    if len(common) < 3:
        return {}
    src = np.stack([ca[n] for n in common])
    tgt = np.stack([cb[n] for n in common])
    scale = scene_scale(tgt)
    if scale <= 0:
        return {}
    try:
        sim, _ = estimate_similarity(src, tgt, tol * scale, seed)
    except ValueError:  # degenerate centres: nothing can be compared
        return {}
    dist = np.linalg.norm(sim3_apply(sim, src) - tgt, axis=1) / scale
    return dict(zip(common, dist.tolist()))


def drop_images(rec: pycolmap.Reconstruction, names: list[str]) -> None:
    """De-register the named images (COLMAP removes their observations and the points left with one)."""
    by_name = {im.name: im for im in rec.images.values() if im.has_pose}
    for frame_id in {by_name[n].frame_id for n in names if n in by_name}:
        rec.deregister_frame(frame_id)


def cross_check(global_rec: pycolmap.Reconstruction | None, incremental_rec: pycolmap.Reconstruction | None,
                tol: float = 0.05, min_agreement: float = 0.7, seed: int = 0,
                flight: list[str] | None = None) -> tuple[pycolmap.Reconstruction, MapperCheck]:
    """Keep the global model where the incremental one confirms it (module docstring); returns it and why.

    With the images' flight order (`flight`, every image name in the order taken), two models that
    disagree too much are told apart by it: the global model is kept when more of its cameras follow
    the flight's order (reconstruction/flight.py) than the incremental model's.
    """
    registered = {name: int(r.num_reg_images()) for name, r in (("global", global_rec), ("incremental", incremental_rec))
                  if r is not None}
    if global_rec is None and incremental_rec is None:
        raise ValueError("neither mapper found a model")
    if incremental_rec is None:
        return global_rec, MapperCheck("global", "unchecked: the incremental mapper found no model", registered=registered)
    if global_rec is None:
        return incremental_rec, MapperCheck("incremental", "the global mapper found no model", registered=registered)
    dist = camera_disagreement(global_rec, incremental_rec, tol, seed)
    if not dist:
        kept = "global" if registered["global"] >= registered["incremental"] else "incremental"
        return ((global_rec if kept == "global" else incremental_rec),
                MapperCheck(kept, "unchecked: fewer than 3 images in both models; kept the larger",
                            registered=registered))
    disputed = sorted(n for n, d in dist.items() if d > tol)
    check = MapperCheck("global", "", common=len(dist), agreeing=len(dist) - len(disputed), registered=registered)
    if check.agreement < min_agreement:
        why = f"only {check.agreeing} of {check.common} cameras agree (< {min_agreement:.0%})"
        if flight:
            from reconstruction.flight import flight_order

            follow = {name: len(flight_order(r, flight).consistent)
                      for name, r in (("global", global_rec), ("incremental", incremental_rec))}
            check.flight_consistent = follow
            if follow["global"] > follow["incremental"]:
                check.reason = (f"{why}; the global model is kept: {follow['global']} of its cameras follow the "
                                f"flight's order against {follow['incremental']} of the incremental model's")
                return global_rec, check
            why += (f"; {follow['incremental']} of the incremental model's cameras follow the flight's order "
                    f"against {follow['global']} of the global model's")
        check.kept = "incremental"
        check.reason = f"the global model is broken: {why}"
        return incremental_rec, check
    drop_images(global_rec, disputed)
    check.dropped = disputed
    check.reason = (f"{check.agreeing} of {check.common} cameras agree"
                    + (f"; dropped {len(disputed)} the two mappers place differently" if disputed else ""))
    return global_rec, check
