"""Embedding image files with a trained SkyLink model (or any encoder callable)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from tqdm import tqdm

from .backbone import load_image, resolve_device, to_tensor

Encoder = torch.nn.Module | Callable[[torch.Tensor], torch.Tensor]


def _load_batch(paths: Sequence[Path], size: int | tuple[int, int], pool: ThreadPoolExecutor) -> torch.Tensor:
    # OpenCV releases the GIL while decoding, so a few threads overlap decoding with the forward pass.
    return torch.stack(list(pool.map(lambda p: to_tensor(load_image(p, size)), paths)))


@torch.inference_mode()
def embed_paths(model: Encoder, paths: Sequence[str | Path], *, branch: str = "street",
                image_size: int | tuple[int, int] = 224, batch_size: int = 32,
                device: str | torch.device = "auto", progress: bool = False) -> np.ndarray:
    """N x dim float32 L2-normalised descriptors of the images at `paths`, in order.

    `model` is a SkyLinkModel (uses `model.embed(x, branch)`) or any callable taking a float pixel
    tensor B x 3 x H x W in [0, 1] (e.g. `backbone.frozen_encoder`); backbones normalise their own input.
    """
    if branch not in ("street", "satellite", "drone"):
        raise ValueError(f"unknown branch {branch!r} (street, satellite or drone)")
    dev = resolve_device(device)
    paths = [Path(p) for p in paths]
    if hasattr(model, "branch_image_size"):   # a model trained with native-size satellite tiles
        image_size = model.branch_image_size(branch, image_size)
    if isinstance(model, torch.nn.Module):
        model.eval()
        embed = model.embed if hasattr(model, "embed") else model
        fn = (lambda x: embed(x, branch)) if hasattr(model, "embed") else embed
    else:
        fn = model
    out: list[np.ndarray] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        starts = range(0, len(paths), batch_size)
        for s in tqdm(starts, desc=f"embed {branch}", disable=not progress, unit="batch"):
            # uint8 crosses to the device (4x less to copy); encoders get float pixels in [0, 1], which
            # every backbone normalises itself and any plain callable can compute with
            x = _load_batch(paths[s:s + batch_size], image_size, pool).to(dev).float().div_(255.0)
            with torch.autocast(device_type=dev.type, enabled=dev.type == "cuda"):
                y = fn(x)
            out.append(F.normalize(y.float(), dim=-1).cpu().numpy())
    if not out:
        dim = getattr(model, "dim", 0)
        return np.zeros((0, dim), np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)
