"""Street -> satellite with the pretrained backbone alone, before any cross-view training.

The floor a trained model has to clear: ImageNet features, GeM-pooled, compared by cosine. On a
small training set, cross-view training can end below it at R@1 (README, "Retrieval results"), so
the ablation table reports it beside the colour-histogram matcher and chance.
"""
from __future__ import annotations

from pathlib import Path

from .backbone import frozen_encoder
from .embed import embed_paths
from .metrics import rank_all, summarize
from .search import collect_sets


def pretrained_recall(root: Path, *, image_size: int = 128, encoder: str = "efficientnet_lite0",
                      weights: str | Path | None = None, device: str = "auto",
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """R@K, R@top1% and AP (fractions) of the frozen pretrained encoder on the test split of `root`
    (the images the index stage embeds), distractors kept, plus the query and gallery counts."""
    root = Path(root)
    _, sets, _ = collect_sets(root)
    bad = [str(root / "test" / name) for name in ("query_street", "gallery_satellite")
           if not sets.get(name) or any(label is None for _, label in sets[name])]
    if bad:
        raise FileNotFoundError(f"{', '.join(bad)}: no images with building labels; "
                                "expected a University-1652-layout tree")
    query, gallery = sets["query_street"], sets["gallery_satellite"]
    enc = frozen_encoder(device, name=encoder, weights=weights)
    q = embed_paths(enc, [p for p, _ in query], image_size=image_size, device=device)
    g = embed_paths(enc, [p for p, _ in gallery], image_size=image_size, device=device)
    m = summarize(rank_all(q, g, [b for _, b in query], [b for _, b in gallery]).positions, len(gallery), ks)
    out = {"queries": m.n_queries, "gallery": len(gallery), "image_size": image_size}
    out.update({f"R@{k}": float(m.recall[k]) for k in ks})
    out["R@top1%"] = float(m.recall_top1pct)
    out["AP"] = float(m.ap)
    return out
