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
    ssl: float = 3.0
    label_smoothing: float = 0.1


def skylink_loss(emb: dict[str, torch.Tensor], scale: torch.Tensor, w: LossWeights,
                 has_3d: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts.

    `emb` holds N x d embeddings: `street`, `satellite`, optionally `threed` (rows with `has_3d` true are
    used; the 3D pairs need at least two such rows), and for the self-supervised term the second
    augmentations `street2`, `satellite2`, `threed2`. The self-supervised term is the mean of the
    per-modality InfoNCE terms times `w.ssl`.
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
    if w.ssl > 0:
        ssl = []
        for name in ("street", "satellite"):
            if f"{name}2" in emb:
                parts[f"ssl_{name}"] = info_nce(emb[name], emb[f"{name}2"], scale, ls)
                ssl.append(parts[f"ssl_{name}"])
        if sel is not None and "threed2" in emb:
            parts["ssl_3d"] = info_nce(td[sel], emb["threed2"][sel], scale, ls)
            ssl.append(parts["ssl_3d"])
        if ssl:
            total = total + w.ssl * torch.stack(ssl).mean()
    return total, {k: float(v.detach()) for k, v in parts.items()}
