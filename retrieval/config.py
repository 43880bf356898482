"""Configuration of the learning stages (`enhance`, `train`, `index`, `evaluate` sections)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

# Metadata of a config field added after caches were built: the field is left out of cache keys while it
# holds its default, so that upgrading SkyLink keeps finished stages and training runs valid.
ADDED_LATER = {"added_later": True}


def added_later(default: Any) -> Any:
    """A config field added after caches were built (see `key_dict`)."""
    return field(default=default, metadata=ADDED_LATER)


def key_dict(section: Any) -> dict:
    """A config dataclass as the dict its cache keys hash: fields marked `added_later` drop out while
    they hold their default, so a new option changes no key until someone sets it."""
    out = dataclasses.asdict(section)
    for f in dataclasses.fields(section):
        if f.metadata.get("added_later") and out[f.name] == f.default:
            del out[f.name]
    return out


@dataclass
class EnhanceConfig:
    keep_share: float = 0.5          # share of each building's google images kept as extra street samples
    score: str = "mean"              # mean (similarity to the mean street embedding) | max (best street image)
    image_size: int = 224
    batch_size: int = 32
    encoder: str = "efficientnet_lite0"   # frozen encoder (backbone name, as train.backbone)
    encoder_weights: str | None = None    # local weights for timm encoders
    device: str = "auto"


@dataclass
class TrainConfig:
    seed: int = 0
    epochs: int = 10
    batch_size: int = 16             # buildings per batch (one sample per building)
    samples_per_building: int = 4    # rounds per epoch: each round visits every train building once
    image_size: int = 224
    satellite_image_size: int = 0    # satellite tiles' input size (0: image_size); larger keeps a tile's
                                     # native detail where the budget allows (PAFA pools to its grid)
    device: str = "auto"
    # model
    backbone: str = "efficientnet_lite0"   # or "timm:<name>" (optional extra; weights from a local file)
    backbone_weights: str | None = None    # local weights file for timm backbones
    pretrained: bool = True
    # 16: stage-5 output (112 ch), 32: 1x1 head output (1280 ch). Stride 16 so that PAFA mixes a real
    # map of tokens: at 128 px stride 32 leaves 4 x 4 = 16 tokens, and PAFA acts like GeM (MixVPR: ~20 x 20)
    feature_stride: int = 16
    freeze_stages: int = 2                 # stem + this many backbone stages (of 5 at stride 16, 7 at 32)
                                           # stay frozen (the low-level ones; see lr below)
    bn_momentum: float = 0.1               # running-statistics momentum of the trainable batch norms
                                           # (the Lite package's 0.01 lags; retrieval/backbone.py)
    drop_connect_rate: float = 0.2
    head: str = "pafa"                     # pafa | gem (ablation)
    pafa_proj_channels: int = 256
    pafa_grid: int = 8                     # patches per side after the patch split: 8 x 8 = 64 tokens, the
                                           # whole stride-16 map at 128 px (larger maps are pooled to it)
    pafa_depth: int = 4                    # mixer blocks
    pafa_mlp_ratio: float = 1.0
    pafa_out_channels: int = 128           # depth-wise projection size
    pafa_out_rows: int = 4                 # row-wise projection size; descriptor = out_channels * out_rows
    gem_p: float = 3.0
    # 3D bridge
    use_3d: bool = True
    scales: tuple[int, ...] = (1, 2, 3)
    render_modalities: tuple[str, ...] = ("color", "depth", "height")
    render_image_size: int = 128
    render_height_range: float = 0.0       # height views encode height / this, clipped (scene units: metres
                                           # with GPS, orbit radii without); 0: the 95th percentile of the
                                           # rendered buildings' tops (retrieval.train_data.auto_height_range)
    render_encoder: str = "efficientnet_lite0"
    render_feature_dim: int = 1280         # channels of the frozen render encoder's global feature
    adapter_hidden: int = 256
    adapter_residual: float = 0.6
    adapter_dropout: float = 0.1
    view_dropout: float = 0.25             # share of views dropped per 3D sample (3D augmentation)
    # geometric targets (issue #12 item 5): the street and satellite descriptors of a building with a
    # 3D cache learn to predict rotation-invariant shape figures of its DSM (height, footprint, fill,
    # elongation; retrieval/geometry_targets.py) through one shared linear layer, so that both encoders
    # carry what the 3D scene knows of a place, also for unseen buildings; 0: off
    w_geometry: float = added_later(0.0)
    # renders through the trainable encoder (item 5's other design): one rendered colour view (any scale)
    # per building with renders joins the batch like a drone image, InfoNCE with its tile; 0: off
    w_render_satellite: float = added_later(0.0)
    # what fills that slot: "renders", or "drone" - a second real drone image of the same building, other
    # than the drone pair's. The control for the renders: do they help through the 3D scene, or only as
    # more drone-like views of each building? "drone+renders": renders there and a second drone image in
    # a slot of its own beside them (what renders add to two real views)
    render_satellite_source: str = added_later("renders")
    # the same rendered view also paired with the building's street photo (InfoNCE): the street half of
    # the bridge through the trainable encoder, street -> render <- satellite; 0: off
    w_render_street: float = added_later(0.0)
    # GREM
    use_grem: bool = True
    # losses
    temperature_init: float = 0.07        # learnable; logit scale starts at 1 / temperature_init
    learn_temperature: bool = True
    label_smoothing: float = 0.1
    w_street_satellite: float = 1.0
    w_street_3d: float = 1.0
    w_3d_satellite: float = 1.0
    w_drone_satellite: float = 1.0        # drone-satellite InfoNCE over the batch's flown buildings (one drone
                                          # image each; University-1652's main task); 0: drone images unused.
                                          # Validation world (seed 2, 3 seeds): drone AP +0.95 [+0.2, +1.7],
                                          # street unchanged, no extra time (README, "validation world")
    ssl_weight: float = 0.0               # self-supervised InfoNCE (two augmentations): weight of the mean
                                          # of the street and satellite terms. The paper's 3.0 (kept in
                                          # university1652.yaml) lost nothing on street->satellite when
                                          # removed on the validation world (R@1 +0.17 [-0.8, +1.1], R@5 +2.1
                                          # [+0.1, +4.0]) and halves each step; it does help drone->satellite
                                          # (R@1 -3.6 without it): street->satellite decides.
    ssl_3d_weight: float | None = None    # the 3D self-supervised term's own weight, added when a batch has
                                          # >= 2 flown buildings (None: ssl_weight / 2, as each 2D term)
    # batch sampling (retrieval/sampling.py)
    flown_per_batch: int = 8               # flown buildings gathered per batch that holds any (when that
                                           # many exist), so the 3D InfoNCE has negatives
    neighbour_sampling: bool = True        # hard negatives: batches of neighbouring buildings, from
    positions_file: str = "positions.json" # this file of the dataset root (id -> [east, north]); skipped when absent
    similarity_sampling: bool = True       # hard negatives: from similarity_start_epoch on, batches of
    similarity_start_epoch: int = 1        # buildings the current model confuses (Sample4Geo)
    hard_negative_group: int = 4           # buildings placed together: a seed and its nearest neighbours
    hard_negative_pool: int = 8            # ... drawn at random among its this-many nearest
    # augmentation
    street_crop_scale: tuple[float, float] = (0.6, 1.0)
    color_jitter: float = 0.3
    blur_prob: float = 0.3
    satellite_rot90: bool = True
    # optimisation
    # lr, backbone_lr_scale and freeze_stages were chosen on a separate 600-building synthetic world
    # (seed 101, never the test split): 1e-3 / 0.3 / 2 gave street->satellite R@1 13% against 6% for
    # 3e-4 / 0.1 / 4 in the same time (README, "Retrieval: what the model needs to generalise").
    lr: float = 1e-3
    backbone_lr_scale: float = 0.3         # backbone learns slower than the freshly initialised heads
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    grad_clip: float = 1.0
    amp: bool = True                       # only on CUDA
    num_workers: int = 0
    threads: int = 0                       # torch CPU threads while training (0: torch's default); 1 is
                                           # much faster when other processes share the cores (OpenMP spinning).
                                           # CPU training is bit-reproducible for a fixed seed and thread count;
                                           # another count changes float reduction order, and the run diverges
    nproc_per_node: int = 1                # >1: the train stage runs torchrun (DDP) with this many processes
    cache_images: int = 4096               # decoded training images kept in memory (0: none)
    # validation and checkpoints
    # the first N train buildings only, flown ones first (None: all): a scale study on one world, paired
    # on its test split (README, "More places, and the steps to see them")
    max_buildings: int | None = added_later(None)
    val_share: float = 0.1                 # train buildings held out for the R@1 printed per epoch
    val_min_train: int = 4                 # no validation split when fewer train buildings would remain
    keep_checkpoints: int = 1


@dataclass
class IndexConfig:
    kind: str = "flat"               # flat (exact) | ivf | hnsw | auto (flat below auto_threshold, else ivf)
    auto_threshold: int = 100_000    # gallery size from which `auto` switches to IVF
    nlist: int = 0                   # IVF lists; 0: about 4 sqrt(N)
    nprobe: int = 16                 # IVF lists visited per query
    hnsw_m: int = 32
    ef_construction: int = 200
    ef_search: int = 128
    checkpoint: str = "model.pt"     # file in the train stage dir (falls back to the newest checkpoints/epoch_*.pt)
    batch_size: int = 32             # embedding batch size
    image_size: int = 0              # 0: the image size the checkpoint was trained with
    device: str = "auto"             # auto | cpu | cuda (torch embedding and faiss-gpu when present)


@dataclass
class EvaluateConfig:
    ks: tuple[int, ...] = (1, 5, 10)     # Recall@K reported besides R@top1% and AP
    top_k: int = 10                      # gallery names per query in the ranks CSV and answer.txt
    curve_max_k: int = 50                # last K of the Recall@K curve plot
    device: str = "auto"                 # device of the exact full-gallery ranking
    answer: bool = True                  # write answer.txt / answer.zip for street -> satellite
