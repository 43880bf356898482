"""Street -> satellite with the pretrained backbone alone, before any cross-view training.

The floor a trained model has to clear: ImageNet features, GeM-pooled, compared by cosine. On a
small training set, cross-view training can end below it at R@1 (README, "Retrieval results"), so
the ablation table reports it beside the colour-histogram matcher and chance.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .backbone import frozen_encoder
from .embed import embed_paths
from .metrics import rank_all, summarize
from .search import collect_sets


def pretrained_recall(root: Path, *, image_size: int = 128, encoder: str = "efficientnet_lite0",
                      weights: str | Path | None = None, device: str = "auto",
                      ks: tuple[int, ...] = (1, 5, 10), query: str = "street") -> dict:
    """R@K, R@top1% and AP (fractions) of the frozen pretrained encoder on the test split of `root`
    (the images the index stage embeds), distractors kept, plus the query and gallery counts.
    `query`: street (street->satellite) or drone (drone->satellite, University-1652's main task)."""
    root = Path(root)
    _, sets, _ = collect_sets(root)
    if query not in ("street", "drone"):
        raise ValueError(f"query must be street or drone, not {query!r}")
    bad = [str(root / "test" / name) for name in (f"query_{query}", "gallery_satellite")
           if not sets.get(name) or any(label is None for _, label in sets[name])]
    if bad:
        raise FileNotFoundError(f"{', '.join(bad)}: no images with building labels; "
                                "expected a University-1652-layout tree")
    queries, gallery = sets[f"query_{query}"], sets["gallery_satellite"]
    enc = frozen_encoder(device, name=encoder, weights=weights)
    q = embed_paths(enc, [p for p, _ in queries], image_size=image_size, device=device)
    g = embed_paths(enc, [p for p, _ in gallery], image_size=image_size, device=device)
    m = summarize(rank_all(q, g, [b for _, b in queries], [b for _, b in gallery]).positions, len(gallery), ks)
    out = {"queries": m.n_queries, "gallery": len(gallery), "image_size": image_size}
    out.update({f"R@{k}": float(m.recall[k]) for k in ks})
    out["R@top1%"] = float(m.recall_top1pct)
    out["AP"] = float(m.ap)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="street->satellite and drone->satellite with the frozen "
                                 "pretrained encoder (the floor a trained model has to clear)")
    ap.add_argument("root", type=Path, help="a University-1652-layout tree (e.g. work/demo/data/tree)")
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--encoder", default="efficientnet_lite0")
    args = ap.parse_args(argv)
    out = {q: pretrained_recall(args.root, image_size=args.image_size, encoder=args.encoder, query=q)
           for q in ("street", "drone")}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
