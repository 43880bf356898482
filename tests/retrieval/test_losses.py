"""InfoNCE values on hand-worked inputs, the loss composition, and the learnable temperature."""
from __future__ import annotations

import math

import pytest
import torch

from retrieval.config import TrainConfig
from retrieval.losses import LossWeights, info_nce, skylink_loss

E = math.e


def test_info_nce_hand_values():
    eye = torch.eye(2)
    swap = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    # logits = I: target (0.95, 0.05) against log-softmax (1 - log(1+e), -log(1+e))
    assert info_nce(eye, eye, 1.0, 0.1).item() == pytest.approx(math.log(1 + E) - 0.95, abs=1e-6)
    # the match scores 0 and the negative 1
    assert info_nce(eye, swap, 1.0, 0.1).item() == pytest.approx(math.log(1 + E) - 0.05, abs=1e-6)
    # no smoothing: plain cross-entropy
    assert info_nce(eye, eye, 1.0, 0.0).item() == pytest.approx(math.log(1 + E) - 1.0, abs=1e-6)
    # the scale multiplies the logits
    assert info_nce(eye, eye, 2.0, 0.0).item() == pytest.approx(math.log(1 + E**2) - 2.0, abs=1e-6)


def test_info_nce_symmetric_and_shape_checked():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    b = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=1)
    assert info_nce(a, b, 10.0).item() == pytest.approx(info_nce(b, a, 10.0).item(), abs=1e-6)
    with pytest.raises(ValueError, match="shapes differ"):
        info_nce(a, b[:4], 1.0)


def test_skylink_loss_composition():
    g = torch.Generator().manual_seed(1)
    emb = {k: torch.nn.functional.normalize(torch.randn(4, 6, generator=g), dim=1)
           for k in ("street", "satellite", "threed", "street2", "satellite2", "threed2")}
    scale = torch.tensor(5.0)
    has = torch.tensor([True, True, True, False])
    w = LossWeights(street_satellite=1.0, street_3d=0.5, sat_3d=2.0, ssl=3.0, label_smoothing=0.1)
    total, parts = skylink_loss(emb, scale, w, has)
    sel = has
    expect_ss = info_nce(emb["street"], emb["satellite"], scale)
    expect_s3 = info_nce(emb["street"][sel], emb["threed"][sel], scale)
    expect_3s = info_nce(emb["threed"][sel], emb["satellite"][sel], scale)
    # each self-supervised term has a fixed weight: ssl / 2 for street and satellite, and the 3D one too
    ssl = (info_nce(emb["street"], emb["street2"], scale) + info_nce(emb["satellite"], emb["satellite2"], scale)
           + info_nce(emb["threed"][sel], emb["threed2"][sel], scale)) / 2
    assert total.item() == pytest.approx((expect_ss + 0.5 * expect_s3 + 2.0 * expect_3s + 3.0 * ssl).item(), rel=1e-5)
    assert set(parts) == {"street_satellite", "street_3d", "3d_satellite", "ssl_street", "ssl_satellite", "ssl_3d"}
    # ablation toggles: no SSL weight -> no SSL terms; fewer than two 3D rows -> no 3D terms
    total0, parts0 = skylink_loss(emb, scale, LossWeights(ssl=0.0), torch.tensor([True, False, False, False]))
    assert set(parts0) == {"street_satellite"}
    assert total0.item() == pytest.approx(expect_ss.item(), rel=1e-6)


def test_2d_self_supervised_weights_do_not_depend_on_the_3d_term():
    """Defect: the self-supervised mean took the 3D term in only when a batch had >= 2 flown buildings,
    so each 2D term's weight changed from batch to batch (and with the "without 3D" ablation)."""
    g = torch.Generator().manual_seed(2)
    emb = {k: torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
           for k in ("street", "satellite", "threed", "street2", "satellite2", "threed2")}
    scale = torch.tensor(10.0)
    w = LossWeights(ssl=3.0)
    with_3d = torch.tensor([True, True, True, False, False, False])
    without_3d = torch.tensor([True, False, False, False, False, False])   # one flown: no 3D terms
    emb_2d = {k: v for k, v in emb.items() if "threed" not in k}
    # the gradient reaching a 2D second view is the same with and without the 3D terms
    grads = []
    for e, has in ((emb, with_3d), (emb, without_3d), (emb_2d, None)):
        leaf = {k: v.clone().requires_grad_(True) for k, v in e.items()}
        total, _ = skylink_loss(leaf, scale, w, has)
        total.backward()
        grads.append(leaf["street2"].grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-6) and torch.allclose(grads[0], grads[2], atol=1e-6)
    assert LossWeights(ssl=3.0).ssl_term_weights() == {"street": 1.5, "satellite": 1.5, "3d": 1.5}
    assert LossWeights(ssl=3.0, ssl_3d=0.5).ssl_term_weights()["3d"] == 0.5


def test_learnable_temperature():
    from retrieval.model import SkyLinkModel

    cfg = TrainConfig(use_3d=False, pretrained=False, pafa_proj_channels=16, pafa_depth=1)
    model = SkyLinkModel(cfg)
    assert model.logit_scale.requires_grad
    assert 1.0 / model.temperature_scale().item() == pytest.approx(0.07, rel=1e-6)
    # aligned pairs without smoothing: the loss falls as the scale grows, so the gradient raises it
    emb = torch.eye(4)
    loss = info_nce(emb, emb, model.temperature_scale(), 0.0)
    loss.backward()
    assert model.logit_scale.grad.item() < 0
    # with smoothing 0.1 the optimum scale for 4 perfect pairs is log(37) ~ 3.6: at 1/0.07 it must fall
    model.logit_scale.grad = None
    info_nce(emb, emb, model.temperature_scale(), 0.1).backward()
    assert model.logit_scale.grad.item() > 0
    with torch.no_grad():
        model.logit_scale.fill_(math.log(1000.0))
    assert model.temperature_scale().item() == pytest.approx(100.0)   # clamped as in CLIP
    fixed = SkyLinkModel(TrainConfig(use_3d=False, pretrained=False, learn_temperature=False,
                                     pafa_proj_channels=16, pafa_depth=1))
    assert not fixed.logit_scale.requires_grad


def test_drone_satellite_pairs_only_with_their_weight():
    torch.manual_seed(0)
    emb = {k: torch.nn.functional.normalize(torch.randn(6, 8), dim=1) for k in ("street", "satellite")}
    rows = torch.tensor([1, 3, 4])
    emb["drone"] = emb["satellite"][rows].clone()         # drone images that look like their tiles
    off, parts_off = skylink_loss(emb, 10.0, LossWeights(ssl=0.0), drone_rows=rows)
    assert "drone_satellite" not in parts_off
    on, parts = skylink_loss(emb, 10.0, LossWeights(ssl=0.0, drone_satellite=2.0), drone_rows=rows)
    expected = info_nce(emb["drone"], emb["satellite"][rows], 10.0, 0.1)
    assert parts["drone_satellite"] == pytest.approx(float(expected))
    assert float(on) == pytest.approx(float(off) + 2.0 * float(expected))
    _, parts_one = skylink_loss(emb, 10.0, LossWeights(ssl=0.0, drone_satellite=2.0), drone_rows=rows[:1])
    assert "drone_satellite" not in parts_one            # one pair has no negative


def test_render_satellite_pairs_use_their_own_rows_and_weight():
    torch.manual_seed(1)
    emb = {k: torch.nn.functional.normalize(torch.randn(6, 8), dim=1) for k in ("street", "satellite")}
    rows = torch.tensor([0, 2, 5])
    emb["render"] = torch.nn.functional.normalize(torch.randn(3, 8), dim=1)
    base, _ = skylink_loss(emb, 10.0, LossWeights(ssl=0.0))
    on, parts = skylink_loss(emb, 10.0, LossWeights(ssl=0.0, render_satellite=0.5), render_rows=rows)
    expected = info_nce(emb["render"], emb["satellite"][rows], 10.0, 0.1)
    assert parts["render_satellite"] == pytest.approx(float(expected))
    assert float(on) == pytest.approx(float(base) + 0.5 * float(expected))
    both, parts = skylink_loss(emb, 10.0, LossWeights(ssl=0.0, render_satellite=0.5, render_street=2.0),
                               render_rows=rows)
    to_street = info_nce(emb["render"], emb["street"][rows], 10.0, 0.1)
    assert parts["render_street"] == pytest.approx(float(to_street))
    assert float(both) == pytest.approx(float(on) + 2.0 * float(to_street))
