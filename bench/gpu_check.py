"""GPU check: a few hundred AMP training steps of the SkyLink model and a faiss-gpu index, with throughput.

Meant for a machine with a CUDA GPU (run by bench/gpu_check.sh; finishes well within 8 minutes).
Images are random tensors: this measures the machinery (AMP, the full loss with the 3D branch,
faiss on the GPU), not accuracy.
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from retrieval.config import TrainConfig
from retrieval.losses import LossWeights, skylink_loss
from retrieval.model import SkyLinkModel
from retrieval.search import build_index, faiss_search, torch_search


def train_steps(steps: int, batch: int, size: int, device: torch.device) -> dict:
    cfg = TrainConfig(image_size=size, batch_size=batch)
    model = SkyLinkModel(cfg).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    w = LossWeights(ssl=cfg.ssl_weight, label_smoothing=cfg.label_smoothing)
    n_views, n_mod = 10, len(cfg.render_modalities)  # the render stage default
    feats = torch.randn(batch, len(cfg.scales), n_views, n_mod, cfg.render_feature_dim, device=device)
    mask = torch.ones(batch, len(cfg.scales), n_views, dtype=torch.bool, device=device)
    imgs = torch.randn(4 * batch, 3, size, size, device=device)
    times = []
    for step in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
            emb, emb3d, scale = model(imgs, feats, mask)
            s1, s2, t1, t2 = emb.float().chunk(4)
            loss, _ = skylink_loss({"street": s1, "street2": s2, "satellite": t1, "satellite2": t2,
                                    "threed": emb3d.float()}, scale.float(), w)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        if not torch.isfinite(loss):
            raise RuntimeError(f"non-finite loss at step {step}")
    steady = np.median(times[5:]) if len(times) > 10 else np.median(times)
    return {"steps": steps, "batch_buildings": batch, "image_size": size, "images_per_step": 4 * batch,
            "step_s_median": round(float(steady), 4), "train_images_per_s": round(4 * batch / float(steady), 1),
            "final_loss": round(float(loss.detach()), 4)}


def search_check(n_gallery: int, n_query: int, dim: int, device: torch.device) -> dict:
    import faiss

    rng = np.random.default_rng(0)
    g = rng.standard_normal((n_gallery, dim)).astype(np.float32)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    q = rng.standard_normal((n_query, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    out = {"faiss_gpus": faiss.get_num_gpus(), "n_gallery": n_gallery, "n_query": n_query, "dim": dim}
    t0 = time.perf_counter()
    index = build_index(g, kind="flat")
    out["faiss_build_s"] = round(time.perf_counter() - t0, 4)
    faiss_search(index, q[:10], 10)  # warm-up
    t0 = time.perf_counter()
    _, fi = faiss_search(index, q, 10)
    out["faiss_search_s"] = round(time.perf_counter() - t0, 4)
    out["faiss_index_type"] = type(index).__name__
    torch_search(q[:10], g, 10, device=device.type)
    t0 = time.perf_counter()
    _, ti = torch_search(q, g, 10, device=device.type)
    out["torch_search_s"] = round(time.perf_counter() - t0, 4)
    out["same_top10_share"] = round(float(np.mean([set(a) == set(b) for a, b in zip(fi, ti)])), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32, help="buildings per batch (4 images each)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--gallery", type=int, default=100_000)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type != "cuda":
        print("warning: no CUDA device; running the same check on the CPU with fewer steps")
        args.steps, args.batch, args.size, args.gallery = min(args.steps, 5), min(args.batch, 4), 128, 10_000
    res = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
           "torch": torch.__version__, "train_amp": train_steps(args.steps, args.batch, args.size, device),
           "search": search_check(args.gallery, 1000, 512, device)}
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
