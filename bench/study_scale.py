"""How street->satellite retrieval on unseen buildings grows with the number of training buildings
and the training recipe: the study behind the train defaults (lr, freeze_stages, backbone_lr_scale)
and behind the demo region's 200 training buildings.

Each run trains street and satellite only (no 3D bridge, no GREM: they need drone images and google
lists, which this study leaves out to afford hundreds of buildings) on the first N training
buildings of one world, then ranks that world's test split (street queries against every
gallery_satellite tile, distractors included). Runs are time-boxed: an epoch that starts after
`--budget-s` is not run, and the model of the last finished epoch is evaluated.

    python -m synthetic.generate --out work/study/w600 --set seed=101 --set n_train=600 \\
        --set n_test=40 --set n_distractors=20 --set drone_images=3 --set drone_groups=3 \\
        --set google_per_building=0 --set street_size=160 --set satellite_size=192 --set drone_size=32
    python bench/study_scale.py --world work/study/w600 --buildings 150 300 600 \\
        --run "default=" --run "lr1e-3=lr=1e-3,freeze_stages=2,backbone_lr_scale=0.3" --budget-s 230

Use a world whose seed differs from the demo's: choices made here must never see the test split
they are reported on. Prints a table and a JSON line; writes bench/out/study_scale.json (--out).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from retrieval.embed import embed_paths  # noqa: E402
from retrieval.metrics import rank_all, summarize  # noqa: E402
from retrieval.model import load_checkpoint  # noqa: E402
from retrieval.train import config_with_overrides, train  # noqa: E402

OUT = REPO / "bench" / "out"


def subset(world: Path, n: int, out: Path) -> Path:
    """A tree of links: the first `n` training buildings (satellite + street) and the whole test split."""
    ids = sorted(p.name for p in (world / "train" / "satellite").iterdir())
    if n > len(ids):
        raise SystemExit(f"{world}: {len(ids)} training buildings, {n} asked for")
    for view in ("satellite", "street"):
        (out / "train" / view).mkdir(parents=True)
        for b in ids[:n]:
            os.symlink((world / "train" / view / b).resolve(), out / "train" / view / b)
    os.symlink((world / "test").resolve(), out / "test")
    return out


def test_metrics(model, world: Path, image_size: int) -> dict:
    """University-1652 metrics (percent) of the test split's street queries against gallery_satellite."""
    def files(folder: str) -> list[tuple[str, Path]]:
        return [(b.name, f) for b in sorted((world / "test" / folder).iterdir()) for f in sorted(b.iterdir())]

    q, g = files("query_street"), files("gallery_satellite")
    eq = embed_paths(model, [f for _, f in q], branch="street", image_size=image_size)
    eg = embed_paths(model, [f for _, f in g], branch="satellite", image_size=image_size)
    ranking = rank_all(eq, eg, [b for b, _ in q], [b for b, _ in g])
    return summarize(ranking.positions, len(g)).to_dict()


def run_one(world: Path, n: int, overrides: list[str], budget_s: float) -> dict:
    cfg = config_with_overrides(None, ["use_3d=false", "use_grem=false", *overrides])
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        data = subset(world, n, Path(tmp) / "data")
        while True:
            ckpt = train(data, Path(tmp) / "train", cfg, progress=False, max_epochs_this_run=1)
            if ckpt.name == "model.pt" or time.time() - t0 > budget_s:
                break
        model, _ = load_checkpoint(ckpt, cfg.device)
        m = test_metrics(model, world, cfg.image_size)
        hist = json.loads((Path(tmp) / "train" / "history.json").read_text())
    return {"buildings": n, "overrides": overrides, "epochs_done": len(hist), "epochs": cfg.epochs,
            "R@1": m["R@1"], "R@5": m["R@5"], "AP": m["AP"], "chance_R@1": 100 / m["n_gallery"],
            "queries": m["n_queries"], "gallery": m["n_gallery"],
            "train_loss_street_satellite": hist[-1]["loss_street_satellite"], "seconds": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=Path, required=True, help="a synthetic world (see the module docstring)")
    ap.add_argument("--buildings", type=int, nargs="+", default=[150, 300, 600])
    ap.add_argument("--run", action="append", default=None, metavar="NAME=K=V,K=V",
                    help="a recipe: train config overrides (repeatable; default: the train defaults)")
    ap.add_argument("--budget-s", type=float, default=230.0, help="wall-clock seconds per run")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every run")
    ap.add_argument("--out", type=Path, default=OUT / "study_scale.json",
                    help="JSON of the rows (give each of several parallel runs its own)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    recipes = {}
    for spec in args.run or ["default="]:
        name, _, over = spec.partition("=")
        recipes[name] = [kv for kv in over.split(",") if kv]
    rows = []
    for name, over in recipes.items():
        for n in args.buildings:
            row = {"recipe": name, **run_one(args.world, n, args.set + over, args.budget_s)}
            rows.append(row)
            print(f"{name:>12} N={n:4d}  R@1 {row['R@1']:5.1f}  R@5 {row['R@5']:5.1f}  (chance {row['chance_R@1']:.1f})"
                  f"  epochs {row['epochs_done']}/{row['epochs']}  {row['seconds']:.0f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
