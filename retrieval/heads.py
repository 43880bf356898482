"""Aggregation heads: PAFA (patch-aware feature aggregation, MixVPR-style) and GeM (ablation baseline).

Both map a backbone feature map B x C x h x w to an L2-normalised descriptor B x dim.
"""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F
import torch

from .backbone import gem


class MixerBlock(nn.Module):
    """One MLP mixer block across patches: each channel's row of patch values is mixed (residual)."""

    def __init__(self, n_patches: int, mlp_ratio: float = 1.0):
        super().__init__()
        hidden = max(1, int(round(n_patches * mlp_ratio)))
        self.mix = nn.Sequential(
            nn.LayerNorm(n_patches),
            nn.Linear(n_patches, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_patches),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # B x C x N
        return x + self.mix(x)


class PAFAHead(nn.Module):
    """Projection -> patch split -> mixer blocks across patches -> depth-wise and row-wise projections
    -> flatten -> L2 norm.

    The patch split pools the projected map onto a fixed `grid` x `grid` set of patches, so one head
    serves every input size (street crops and satellite tiles of different resolution).
    """

    def __init__(self, in_channels: int, proj_channels: int = 256, grid: int = 4, depth: int = 4,
                 mlp_ratio: float = 1.0, out_channels: int = 128, out_rows: int = 4):
        super().__init__()
        self.grid = grid
        n_patches = grid * grid
        self.proj = nn.Conv2d(in_channels, proj_channels, kernel_size=1)
        self.mixer = nn.Sequential(*[MixerBlock(n_patches, mlp_ratio) for _ in range(depth)])
        self.depth_proj = nn.Linear(proj_channels, out_channels)   # across channels ("depth")
        self.row_proj = nn.Linear(n_patches, out_rows)             # across patches ("rows")
        self.dim = out_channels * out_rows
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # A channels-last backbone map would give the 1x1 projection channels-last gradients, which DDP's
        # contiguous gradient buckets then have to copy on every step.
        x = self.proj(x.contiguous())
        if x.shape[-2:] != (self.grid, self.grid):
            x = F.adaptive_avg_pool2d(x, self.grid)
        x = x.flatten(2)                                   # B x C' x N patches
        x = self.mixer(x)
        x = self.depth_proj(x.transpose(1, 2))             # B x N x out_channels
        x = self.row_proj(x.transpose(1, 2))               # B x out_channels x out_rows
        return F.normalize(x.flatten(1), dim=-1)


class GeMHead(nn.Module):
    """GeM pooling (learnable p) + linear projection to `dim` + L2 norm."""

    def __init__(self, in_channels: int, dim: int = 512, p: float = 3.0):
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)))
        self.fc = nn.Linear(in_channels, dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # p is clamped so that a runaway update cannot make the pooling degenerate (p -> 0 or inf).
        return F.normalize(self.fc(gem(x, self.p.clamp(1.0, 8.0))), dim=-1)


def build_head(kind: str, in_channels: int, *, proj_channels: int = 256, grid: int = 4, depth: int = 4,
               mlp_ratio: float = 1.0, out_channels: int = 128, out_rows: int = 4,
               gem_p: float = 3.0) -> nn.Module:
    """`pafa` or `gem`; the GeM head gets the same descriptor size as the PAFA head for a fair ablation."""
    if kind == "pafa":
        return PAFAHead(in_channels, proj_channels, grid, depth, mlp_ratio, out_channels, out_rows)
    if kind == "gem":
        return GeMHead(in_channels, out_channels * out_rows, gem_p)
    raise ValueError(f"unknown head {kind!r} (pafa or gem)")
