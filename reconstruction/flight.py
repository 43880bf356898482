"""Flight-order check of an orbit's cameras: each image's bearing about the orbit axis follows its place in the flight.

A drone sent to a building circles it and takes its images in order (University-1652's image-01 ...
image-54 on a descending spiral, and our synthetic world's flights alike), so the bearing of the
n-th camera about the orbit axis is a0 + n * step with one step for the whole flight. On buildings
that look alike from two sides SfM can place a run of images at their mirror positions: COLMAP's
incremental mapper did so for 12 of 27 images of one all-flown building (every one about two orbit
radii from its true place), and re-registering images that the mappers dispute put two more at
wrong bearings on another. Those cameras keep small reprojection errors, so nothing in the model
itself shows them, but their bearings break the flight's order. Reads only the model and the image
names; the check stands aside (`applies` false) where the flight is no regular orbit.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pycolmap

from reconstruction.align import camera_centres, estimate_up, rotation_to_z
from reconstruction.framing import fit_circle

MIN_CAMERAS = 6        # fewer registered cameras say too little about a flight's order
MIN_STEP_DEG = 2.0     # a smaller step between consecutive images is no orbit (a hover, a straight line)
MIN_SHARE = 0.5        # the flight is an orbit when more than this share of its cameras follow one step
MIN_TURN_DEG = 360.0   # ... and the flight goes round at least once (a facade's arc of photos is none)


@dataclass
class FlightOrder:
    """What the check found: the step, the cameras that follow it and those that do not."""

    applies: bool
    reason: str
    step_deg: float | None = None
    consistent: list[str] = field(default_factory=list)
    off: list[str] = field(default_factory=list)       # registered cameras whose bearing breaks the order
    off_deg: dict[str, float] = field(default_factory=dict)  # their bearing's distance from the expected one
    dropped: list[str] = field(default_factory=list)   # of `off`, those removed from the model

    def to_dict(self) -> dict:
        return {"applies": self.applies, "reason": self.reason,
                "step_deg": None if self.step_deg is None else round(self.step_deg, 2),
                "consistent": len(self.consistent), "off": self.off,
                "off_deg": {k: round(v, 1) for k, v in self.off_deg.items()}, "dropped": self.dropped}


def _wrap(deg: np.ndarray | float) -> np.ndarray:
    """Angles to (-180, 180]."""
    return -((-np.asarray(deg, dtype=np.float64) + 180.0) % 360.0 - 180.0)


def bearings(rec: pycolmap.Reconstruction) -> dict[str, float]:
    """Each registered camera's bearing (degrees) about the orbit axis, in the model's own frame.

    Up comes from the cameras (their horizontal x axes, as the alignment finds it); the axis is the
    circle through the centres seen from above.
    """
    centres = camera_centres(rec)
    if len(centres) < 3:
        return {}
    names = sorted(centres)
    up, _ = estimate_up(rec)
    xy = (np.stack([centres[n] for n in names]) @ rotation_to_z(up).T)[:, :2]
    centre, _, _ = fit_circle(xy)
    d = xy - centre
    return dict(zip(names, np.degrees(np.arctan2(d[:, 1], d[:, 0]))))


def check_bearings(bearing: dict[str, float], order: list[str], tol_steps: float = 0.5) -> FlightOrder:
    """Fit bearing = a0 + step * index (index: place in `order`) and name the cameras more than
    `tol_steps` steps off it.

    The step is the median bearing change per image between cameras adjacent in the flight (a run of
    mirrored cameras turns the wrong way at its two ends only); a0 is the phase that most cameras
    share, so a minority of misplaced cameras cannot move it.
    """
    index = {n: i for i, n in enumerate(order)}
    names = sorted((n for n in bearing if n in index), key=index.get)
    if len(names) < MIN_CAMERAS:
        return FlightOrder(False, f"only {len(names)} registered cameras in the flight (< {MIN_CAMERAS})")
    idx = np.array([index[n] for n in names], dtype=np.float64)
    az = np.array([bearing[n] for n in names])
    gaps = np.diff(idx)
    steps = _wrap(np.diff(az)) / gaps
    near = gaps <= 2  # across longer gaps a step of more than 180/gap degrees would alias
    step = float(np.median(steps[near] if near.any() else steps))
    if abs(step) < MIN_STEP_DEG:
        return FlightOrder(False, f"the bearing changes by {step:.1f} degrees per image: no orbit", step)
    if abs(step) * (len(order) - 1) < MIN_TURN_DEG:
        return FlightOrder(False, f"{len(order)} images {step:.1f} degrees apart go round less than once: no orbit", step)
    tol = tol_steps * abs(step)
    phase = _wrap(az - step * idx)
    support = (np.abs(_wrap(phase[:, None] - phase[None, :])) < tol).sum(axis=1)
    ref = phase[int(np.argmax(support))]
    inl = np.abs(_wrap(phase - ref)) < tol
    ref = float(ref + _wrap(phase[inl] - ref).mean())
    dev = np.abs(_wrap(phase - ref))
    ok = dev < tol
    if ok.mean() <= MIN_SHARE:
        return FlightOrder(False, f"only {int(ok.sum())} of {len(names)} cameras follow one step of {step:.1f} "
                                  f"degrees: no regular orbit", step)
    off = [n for n, o in zip(names, ok) if not o]
    return FlightOrder(True, f"{int(ok.sum())} of {len(names)} cameras follow the flight's step of {step:.1f} degrees",
                       step, [n for n, o in zip(names, ok) if o], off,
                       {n: float(d) for n, d, o in zip(names, dev, ok) if not o})


def flight_order(rec: pycolmap.Reconstruction, order: list[str], tol_steps: float = 0.5) -> FlightOrder:
    """`check_bearings` on a model's cameras."""
    return check_bearings(bearings(rec), order, tol_steps)
