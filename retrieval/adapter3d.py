"""The multi-scale 3D branch: cached frozen-backbone features of rendered views -> one descriptor per
scale (inter-view residual adapter, PointCLIP-style) -> fused 3D descriptor."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of B x V x D, counting only views where mask (B x V) is true."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


def _masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    filled = x.masked_fill(~mask.unsqueeze(-1), torch.finfo(x.dtype).min)
    out = filled.max(1).values
    return torch.where(mask.any(1, keepdim=True), out, torch.zeros_like(out))


class InterViewAdapter(nn.Module):
    """Views of one scale -> one descriptor.

    Each view (its colour, depth and height features concatenated) is projected by a shared view-wise
    layer; a global code summarises all views (mean and max, so the number of views may vary) and is
    added back to every view as a residual (the inter-view part); the views are then pooled.
    """

    def __init__(self, in_dim: int, hidden: int, out_dim: int, residual: float = 0.6, dropout: float = 0.1):
        super().__init__()
        self.view_proj = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU())
        self.global_mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.residual = residual
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, out_dim))

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """feats B x V x in_dim, mask B x V (bool) -> B x out_dim (L2-normalised)."""
        h = self.view_proj(feats)
        g = self.global_mlp(torch.cat([_masked_mean(h, mask), _masked_max(h, mask)], dim=-1))
        h = h + self.residual * g.unsqueeze(1)
        return F.normalize(self.out(_masked_mean(h, mask)), dim=-1)


class MultiScaleAdapter(nn.Module):
    """One inter-view adapter per scale; the per-scale descriptors are fused into one 3D descriptor."""

    def __init__(self, n_scales: int, n_modalities: int, feature_dim: int, out_dim: int, hidden: int = 256,
                 residual: float = 0.6, dropout: float = 0.1):
        super().__init__()
        self.n_scales, self.n_modalities, self.feature_dim = n_scales, n_modalities, feature_dim
        in_dim = n_modalities * feature_dim
        self.scales = nn.ModuleList(InterViewAdapter(in_dim, hidden, out_dim, residual, dropout)
                                    for _ in range(n_scales))
        self.fuse = nn.Linear(n_scales * out_dim, out_dim)
        self.dim = out_dim

    def forward(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats B x S x V x M x C, mask B x S x V -> (fused B x dim, per-scale B x S x dim)."""
        b, s, v = feats.shape[:3]
        if s != self.n_scales:
            raise ValueError(f"3D features have {s} scales, the adapter was built for {self.n_scales}")
        flat = feats.reshape(b, s, v, -1)
        per_scale = torch.stack([ad(flat[:, i], mask[:, i]) for i, ad in enumerate(self.scales)], dim=1)
        # A scale without any rendered view contributes zeros rather than a meaningless descriptor.
        present = mask.any(-1, keepdim=True).to(per_scale.dtype)
        fused = self.fuse((per_scale * present).flatten(1))
        return F.normalize(fused, dim=-1), per_scale
