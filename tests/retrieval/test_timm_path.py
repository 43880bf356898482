"""The real-data recipe's path: a timm ViT with weights from a local file, trained a step and indexed.

With timm installed a real (small) DINOv2 ViT is built; a stand-in `timm` module runs the same path
everywhere, so the wrapper (tokens -> patch grid, local weights, its own normalisation) is always tested.
"""
from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from retrieval.config import TrainConfig
from retrieval.model import load_checkpoint
from retrieval.search import index_tree
from retrieval.train import train
from tests.retrieval.test_train import make_tree


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    make_tree(tree, tmp_path / "renders", n=6, size=64)
    for bid in ("0001", "0002"):                       # a small test split: two queries, a gallery of three
        (tree / "test" / "query_street" / bid).mkdir(parents=True)
        shutil.copy(tree / "train" / "street" / bid / "0.jpg", tree / "test" / "query_street" / bid / "0.jpg")
    for bid in ("0001", "0002", "0003"):
        (tree / "test" / "gallery_satellite" / bid).mkdir(parents=True)
        shutil.copy(tree / "train" / "satellite" / bid / f"{bid}.jpg", tree / "test" / "gallery_satellite" / bid)
    return tree


def _train_and_index(tmp_path: Path, name: str, weights: Path, image_size: int) -> None:
    tree = _tree(tmp_path)
    cfg = TrainConfig(backbone=f"timm:{name}", backbone_weights=str(weights), freeze_stages=0, image_size=image_size,
                      epochs=1, batch_size=6, samples_per_building=1, device="cpu", threads=1, use_3d=False,
                      use_grem=False, val_share=0.0, pafa_grid=4, pafa_proj_channels=16, pafa_depth=1,
                      pafa_out_channels=8, pafa_out_rows=2, cache_images=64, similarity_sampling=False)
    final = train(tree, tmp_path / "train", cfg, progress=False)
    model, conf = load_checkpoint(final, "cpu")
    assert conf["backbone"] == f"timm:{name}"
    meta = index_tree(model, tree, tmp_path / "index", image_size=image_size, device="cpu", progress=False)
    assert meta["sets"]["query_street"]["n"] == 2 and meta["sets"]["gallery_satellite"]["n"] == 3
    assert meta["sets"]["gallery_satellite"]["dim"] == 16


def test_timm_vit_path_with_a_stand_in_timm(tmp_path, monkeypatch):
    class TinyViT(torch.nn.Module):
        num_features, num_prefix_tokens = 8, 1
        pretrained_cfg: ClassVar[dict] = {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Conv2d(3, 8, 16, 16)

        def forward_features(self, x):
            t = self.proj(x).flatten(2).transpose(1, 2)
            return torch.cat([t.mean(1, keepdim=True), t], dim=1)    # a class token + patches

    fake = types.ModuleType("timm")
    fake.create_model = lambda name, pretrained=False, num_classes=0, **kw: TinyViT()
    monkeypatch.setitem(sys.modules, "timm", fake)
    torch.manual_seed(0)
    torch.save(TinyViT().state_dict(), tmp_path / "vit.pth")
    _train_and_index(tmp_path, "tiny_vit", tmp_path / "vit.pth", 64)


def test_timm_dinov2_vit_from_a_local_file(tmp_path):
    timm = pytest.importorskip(
        "timm", reason="timm is not installed: it imports torchvision, whose registry wheels are CUDA builds "
        "that cannot load beside the CPU torch 2.13 wheel (torchvision::nms does not exist); "
        "install the extra where a matching torchvision exists: pip install 'skylink[timm]'")
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, dynamic_img_size=True)
    assert tuple(vit.pretrained_cfg["mean"]) == pytest.approx((0.485, 0.456, 0.406))
    torch.save(vit.state_dict(), tmp_path / "dinov2_vits14.pth")
    _train_and_index(tmp_path, "vit_small_patch14_dinov2", tmp_path / "dinov2_vits14.pth", 56)
    assert np.isfinite(np.load(next((tmp_path / "index").rglob("*.npy")))).all()
