"""Test-time augmentation measured on finished validation runs: satellite tiles embedded as the mean of
their four 90-degree rotations (training rotates tiles at random, so no rotation is the tile's own), and
street photos as the mean of the photo and its mirror image. Paired on the same queries, over the seeds.

    OMP_NUM_THREADS=1 python bench/tta_validation.py work/val600/choices/b200-s0 work/val600/choices/b200-s1 \\
        work/val600/choices/b200-s2 --out-dir work/tta --json bench/tta_validation600.json

Each run dir holds `train/` (the checkpoint) and `data` (the world); every variant is indexed and
evaluated into OUT_DIR/<variant>-<run>/ as the pipeline's index and evaluate stages do.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.nn import functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.choose_recipe import paired  # noqa: E402
from pipeline.stages.index import find_checkpoint  # noqa: E402
from retrieval.evaluate import evaluate_index  # noqa: E402
from retrieval.model import load_checkpoint  # noqa: E402
from retrieval.search import index_tree  # noqa: E402

VARIANTS = {"plain": (False, False), "sat_rot4": (True, False), "street_flip": (False, True), "both": (True, True)}


class Averaged(torch.nn.Module):
    """A model whose branches embed the mean of several views of each image (each L2-normalised)."""

    def __init__(self, model, satellite_rotations: bool, street_flip: bool):
        super().__init__()
        self.model, self.rot, self.flip = model, satellite_rotations, street_flip
        self.dim = model.dim

    def branch_image_size(self, branch, default):
        return self.model.branch_image_size(branch, default)

    def embed(self, x: torch.Tensor, branch: str = "street") -> torch.Tensor:
        if branch == "satellite" and self.rot:
            views = [torch.rot90(x, k, dims=(2, 3)) for k in range(4)]
        elif branch == "street" and self.flip:
            views = [x, torch.flip(x, dims=(3,))]
        else:
            return self.model.embed(x, branch)
        return torch.stack([F.normalize(self.model.embed(v, branch), dim=-1) for v in views]).mean(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    variants = args.variants.split(",")
    for run in args.runs:
        model, tcfg = load_checkpoint(find_checkpoint(run / "train", "model.pt"), "cpu")
        size = int(tcfg.get("image_size", 224))
        tree = (run / "data" / "tree").resolve()
        for v in variants:
            d = args.out_dir / f"{v}-{run.name}"
            if (d / "evaluate" / "metrics.json").is_file():
                continue
            index_tree(Averaged(model, *VARIANTS[v]), tree, d / "index", image_size=size, device="cpu",
                       index_device="cpu", progress=False, workdir=d)
            evaluate_index(d / "index", d / "evaluate", device="cpu", index_device="cpu", write_answer=False, workdir=d)
    out = {"runs": [str(r) for r in args.runs], "threads": 1, "vs_plain": {}}
    for task in ("street->satellite", "drone->satellite"):
        ref = [args.out_dir / f"plain-{r.name}" for r in args.runs]
        for v in variants[1:] if variants[0] == "plain" else variants:
            res = paired(ref, [args.out_dir / f"{v}-{r.name}" for r in args.runs], task)
            out["vs_plain"].setdefault(v, {})[task] = res
            print(f"{task:18s} {v:12s} " + "  ".join(f"{k} {x['mean']:+.2f} [{x['ci95'][0]:+.1f}, {x['ci95'][1]:+.1f}]"
                                                    for k, x in res.items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
