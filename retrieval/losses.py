"""Contrastive losses: symmetric InfoNCE with a learnable temperature and label smoothing (Sample4Geo),
over the cross-view pairs street-satellite, street-3D, 3D-satellite, plus self-supervised InfoNCE per
modality between two augmentations of the same sample."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


def info_nce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor | float,
             label_smoothing: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned L2-normalised embeddings a, b (N x d): row i of a matches
    row i of b, every other row of the batch is a negative."""
    if a.shape != b.shape:
        raise ValueError(f"info_nce: shapes differ {tuple(a.shape)} vs {tuple(b.shape)}")
    logits = scale * (a @ b.t())
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels, label_smoothing=label_smoothing)
                  + F.cross_entropy(logits.t(), labels, label_smoothing=label_smoothing))


@dataclass(frozen=True)
class LossWeights:
    street_satellite: float = 1.0
    street_3d: float = 1.0
    sat_3d: float = 1.0
    ssl: float = 0.0                  # weight of the mean of the street and satellite self-supervised terms
                                      # (off, as TrainConfig.ssl_weight; the paper used 3.0)
    label_smoothing: float = 0.1
    ssl_3d: float | None = None       # the 3D self-supervised term's weight (None: ssl / 2, as each 2D term)
    drone_satellite: float = 0.0      # drone-satellite pairs of the flown buildings
    render_satellite: float = 0.0     # rendered colour views (through the trainable encoder)-satellite pairs
    render_street: float = 0.0        # the same rendered views paired with the street photos of their rows
    drone2_satellite: float = 0.0     # a second drone image of the flown buildings, paired with their tiles

    def ssl_term_weights(self) -> dict[str, float]:
        """Fixed weight of each self-supervised term: a batch without flown buildings drops the 3D
        term but never reweights the 2D ones, so "without the 3D bridge" keeps the 2D loss unchanged."""
        return {"street": self.ssl / 2, "satellite": self.ssl / 2,
                "3d": self.ssl / 2 if self.ssl_3d is None else self.ssl_3d}


def skylink_loss(emb: dict[str, torch.Tensor], scale: torch.Tensor, w: LossWeights,
                 has_3d: torch.Tensor | None = None,
                 drone_rows: torch.Tensor | None = None,
                 render_rows: torch.Tensor | None = None,
                 drone2_rows: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts.

    `emb` holds N x d embeddings: `street`, `satellite`, optionally `threed` (rows with `has_3d` true are
    used; the 3D pairs need at least two such rows), and for the self-supervised term the second
    augmentations `street2`, `satellite2`, `threed2`. Each self-supervised term has its own fixed
    weight (`LossWeights.ssl_term_weights`): street and satellite `w.ssl / 2` each, 3D `w.ssl_3d`.
    `drone` (K x d) holds drone images of the batch rows `drone_rows` (K >= 2), paired with their tiles;
    `render` (K x d) likewise rendered colour views of the rows `render_rows`, paired with their tiles
    and, with `w.render_street`, with their street photos; `drone2` a second drone image of the rows
    `drone2_rows`, in a term of its own (so two images of one building are never each other's negatives).
    """
    ls = w.label_smoothing
    parts: dict[str, torch.Tensor] = {"street_satellite": info_nce(emb["street"], emb["satellite"], scale, ls)}
    total = w.street_satellite * parts["street_satellite"]
    td = emb.get("threed")
    sel = None
    if td is not None:
        sel = has_3d if has_3d is not None else torch.ones(td.shape[0], dtype=torch.bool, device=td.device)
        if int(sel.sum()) >= 2:
            parts["street_3d"] = info_nce(emb["street"][sel], td[sel], scale, ls)
            parts["3d_satellite"] = info_nce(td[sel], emb["satellite"][sel], scale, ls)
            total = total + w.street_3d * parts["street_3d"] + w.sat_3d * parts["3d_satellite"]
        else:
            sel = None
    for view, weight, rows in (("drone", w.drone_satellite, drone_rows), ("render", w.render_satellite, render_rows),
                               ("drone2", w.drone2_satellite, drone2_rows)):
        if weight > 0 and view in emb and rows is not None and len(rows) >= 2:
            parts[f"{view}_satellite"] = info_nce(emb[view], emb["satellite"][rows], scale, ls)
            total = total + weight * parts[f"{view}_satellite"]
    if w.render_street > 0 and "render" in emb and render_rows is not None and len(render_rows) >= 2:
        parts["render_street"] = info_nce(emb["render"], emb["street"][render_rows], scale, ls)
        total = total + w.render_street * parts["render_street"]
    ws = w.ssl_term_weights()
    for name in ("street", "satellite"):
        if ws[name] > 0 and f"{name}2" in emb:
            parts[f"ssl_{name}"] = info_nce(emb[name], emb[f"{name}2"], scale, ls)
            total = total + ws[name] * parts[f"ssl_{name}"]
    if ws["3d"] > 0 and sel is not None and "threed2" in emb:
        parts["ssl_3d"] = info_nce(td[sel], emb["threed2"][sel], scale, ls)
        total = total + ws["3d"] * parts["ssl_3d"]
    return total, {k: float(v.detach()) for k, v in parts.items()}


def geometry_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 between predicted and standardised geometric targets (N x K), averaged over the rows
    where `mask` (N, bool) is true; 0 (still in the graph, so every process of DDP uses the layer)
    when no row has a target."""
    per_row = F.smooth_l1_loss(pred, target, reduction="none").mean(1)
    w = mask.to(per_row.dtype)
    return (per_row * w).sum() / w.sum().clamp(min=1.0)
