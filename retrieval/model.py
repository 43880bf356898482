"""The SkyLink network: a Siamese backbone + PAFA/GeM head shared by street, satellite and drone images,
the multi-scale 3D adapter, and the learnable temperature; checkpoint loading."""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .adapter3d import MultiScaleAdapter
from .backbone import load_backbone, resolve_device
from .config import TrainConfig
from .heads import build_head

logger = logging.getLogger("skylink")

BRANCHES = ("street", "satellite", "drone")


class SkyLinkModel(nn.Module):
    """Street, satellite and drone images share one backbone and one head (Siamese); the 3D branch
    turns cached render features into a descriptor in the same space."""

    def __init__(self, cfg: TrainConfig, pretrained: bool | None = None):
        super().__init__()
        pretrained = cfg.pretrained if pretrained is None else pretrained
        self.backbone = load_backbone(cfg.backbone, pretrained=pretrained, feature_stride=cfg.feature_stride,
                                      drop_connect_rate=cfg.drop_connect_rate, weights=cfg.backbone_weights,
                                      bn_momentum=cfg.bn_momentum)
        self.backbone.freeze(cfg.freeze_stages)
        self.head = build_head(cfg.head, self.backbone.out_channels, proj_channels=cfg.pafa_proj_channels,
                               grid=cfg.pafa_grid, depth=cfg.pafa_depth, mlp_ratio=cfg.pafa_mlp_ratio,
                               out_channels=cfg.pafa_out_channels, out_rows=cfg.pafa_out_rows, gem_p=cfg.gem_p)
        self.dim = int(self.head.dim)
        self.image_size, self.satellite_image_size = int(cfg.image_size), int(cfg.satellite_image_size)
        self.adapter3d: MultiScaleAdapter | None = None
        if cfg.use_3d:
            self.adapter3d = MultiScaleAdapter(len(cfg.scales), len(cfg.render_modalities), cfg.render_feature_dim,
                                               self.dim, cfg.adapter_hidden, cfg.adapter_residual,
                                               cfg.adapter_dropout)
        # Geometric targets (train.w_geometry): one layer shared by street and satellite, so that both
        # encode the building's shape along the same directions of the descriptor space.
        self.geometry_head: nn.Linear | None = None
        if cfg.w_geometry > 0:
            from .geometry_targets import NAMES

            self.geometry_head = nn.Linear(self.dim, len(NAMES))
        # CLIP-style learnable temperature: logits = exp(logit_scale) * cosine similarity.
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.temperature_init)),
                                        requires_grad=cfg.learn_temperature)

    def branch_image_size(self, branch: str, default: int | tuple[int, int]) -> int | tuple[int, int]:
        """The input size of a branch: satellite tiles keep their own size when trained with one."""
        return self.satellite_image_size if branch == "satellite" and self.satellite_image_size > 0 else default

    def embed(self, images: torch.Tensor, branch: str = "street") -> torch.Tensor:
        """Pixels B x 3 x H x W (uint8, or float in [0, 1]; the backbone normalises them) -> L2-normalised
        B x dim descriptors."""
        if branch not in BRANCHES:
            raise ValueError(f"unknown branch {branch!r} (one of {BRANCHES})")
        return self.head(self.backbone(images))

    def embed_3d(self, feats: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cached render features B x S x V x M x C and view mask B x S x V -> fused B x dim descriptors."""
        if self.adapter3d is None:
            raise RuntimeError("this model was built with use_3d=False")
        return self.adapter3d(feats, mask)[0]

    def forward(self, images: torch.Tensor | list[torch.Tensor], feats3d: torch.Tensor | None = None,
                mask3d: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Training entry point (what DDP wraps): 2D embeddings, 3D embeddings (or None) and the logit
        scale, so that every trained parameter, the temperature included, is used inside forward.

        `images` is one pixel tensor or a list of them (e.g. street crops and satellite tiles of
        different sizes); groups of one size share a backbone pass, the embeddings come back in order."""
        groups = [images] if isinstance(images, torch.Tensor) else list(images)
        if len({tuple(g.shape[-2:]) for g in groups}) == 1:
            emb = self.head(self.backbone(torch.cat(groups) if len(groups) > 1 else groups[0]))
        else:
            emb = torch.cat([self.head(self.backbone(g)) for g in groups])
        emb3d = self.embed_3d(feats3d, mask3d) if feats3d is not None and self.adapter3d is not None else None
        return emb, emb3d, self.temperature_scale()

    def temperature_scale(self) -> torch.Tensor:
        # Clamped at 100 as in CLIP: an unbounded scale makes the loss unstable.
        return self.logit_scale.clamp(max=math.log(100.0)).exp()


def config_from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from its JSON form (lists back to tuples; unknown keys are dropped)."""
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        if key not in fields:
            logger.warning("checkpoint config key %r is not a TrainConfig field; ignored", key)
            continue
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return TrainConfig(**kwargs)


def load_checkpoint(path: str | Path, device: str | torch.device = "auto") -> tuple[SkyLinkModel, dict[str, Any]]:
    """A trained model in eval mode on `device` and the resolved train config (a dict) it was built with."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"{path}: cannot read checkpoint ({e})") from e
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ValueError(f"{path}: not a SkyLink checkpoint (needs 'model' and 'config')")
    cfg = config_from_dict(ckpt["config"])
    model = SkyLinkModel(cfg, pretrained=False)   # the weights come from the checkpoint
    missing, unexpected = model.load_state_dict(ckpt["model"], strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    model.to(resolve_device(device)).eval()
    return model, dict(ckpt["config"])
