"""Training throughput (images/s through forward + backward + optimizer step, data loading included) and
embedding throughput of the SkyLink network, on a generated synthetic world or a given tree.

    python bench/bench_train.py [--data TREE] [--renders DIR] [--image-size 128 160] [--epochs 1]

Prints a table and a JSON line; writes bench/out/bench_train.json. "images" counts every image the
network sees per step (street + satellite, and their second augmentations when the self-supervised
term is on).
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retrieval.config import TrainConfig  # noqa: E402
from retrieval.embed import embed_paths  # noqa: E402
from retrieval.model import load_checkpoint  # noqa: E402
from retrieval.train import train  # noqa: E402

OUT = REPO / "bench" / "out"


def make_world(n_train: int, seed: int = 0) -> Path:
    """A synthetic world with `n_train` training buildings (few drone images: training does not read them)."""
    from synthetic.config import SynthConfig
    from synthetic.generate import generate_world

    root = OUT / f"train-world-{n_train}-{seed}"
    if not (root / "meta" / "buildings.json").exists():
        cfg = SynthConfig(seed=seed, n_train=n_train, n_test=1, n_distractors=0, drone_images=3)
        generate_world(cfg, root)
    return root


def bench_one(data: Path, renders: Path | None, image_size: int, epochs: int, batch_size: int, ssl: float,
              threads: int) -> dict:
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, image_size=image_size, device="cpu", threads=threads,
                      ssl_weight=ssl, use_3d=renders is not None, use_grem=False, val_share=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        final = train(data, Path(tmp), cfg, renders=renders, progress=False)
        wall = time.time() - t0
        hist = json.loads((Path(tmp) / "history.json").read_text())
        model, _ = load_checkpoint(final, "cpu")
        paths = sorted((data / "train").glob("*/*/*.jp*g"))[:256]
        default_threads = torch.get_num_threads()
        torch.set_num_threads(threads or default_threads)
        t1 = time.time()
        embed_paths(model, paths, branch="street", image_size=image_size, batch_size=32, device="cpu")
        embed_rate = len(paths) / (time.time() - t1)
        torch.set_num_threads(default_threads)
    return {"threads": threads or torch.get_num_threads(), "image_size": image_size, "ssl_weight": ssl, "use_3d": renders is not None, "batch_size": batch_size,
            "epochs": epochs, "steps_per_epoch": hist[-1]["steps"],
            "train_images_per_s": round(sum(h["images_per_s"] for h in hist) / len(hist), 2),
            "epoch_seconds": round(sum(h["seconds"] for h in hist) / len(hist), 2),
            "total_seconds_incl_setup": round(wall, 2), "embed_images_per_s": round(embed_rate, 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None, help="University-1652 tree (default: generate one)")
    p.add_argument("--renders", type=Path, default=None, help="render stage output for the 3D bridge")
    p.add_argument("--n-train", type=int, default=64, help="training buildings of the generated world")
    p.add_argument("--image-size", type=int, nargs="+", default=[128], help="the demo's 128 by default")
    p.add_argument("--batch-size", type=int, default=32, help="the demo's 32 by default")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, nargs="+", default=[0],
                   help="torch threads (0: default); 1 is faster when other processes load the cores")
    p.add_argument("--ssl", type=float, nargs="+", default=[0.0],
                   help="ssl weights to bench (default 0, the default recipe; 3, the paper's, doubles the images)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    OUT.mkdir(parents=True, exist_ok=True)
    data = args.data or make_world(args.n_train)
    rows = [bench_one(data, args.renders, s, args.epochs, args.batch_size, ssl, t)
            for t in args.threads for s in args.image_size for ssl in args.ssl]
    result = {"bench": "train", "machine": {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
                                            "torch": torch.__version__}, "data": str(data), "rows": rows}
    cols = ["threads", "image_size", "ssl_weight", "use_3d", "batch_size", "steps_per_epoch", "train_images_per_s",
            "epoch_seconds", "embed_images_per_s"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    print(json.dumps(result))
    (OUT / "bench_train.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
