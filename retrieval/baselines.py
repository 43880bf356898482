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

_IMAGE_EXT = (".jpg", ".jpeg", ".png")


def _images(folder: Path) -> tuple[list[Path], list[str]]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: missing; expected a University-1652-layout tree")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in _IMAGE_EXT)
    return paths, [p.parent.name for p in paths]


def pretrained_recall(root: Path, *, image_size: int = 128, encoder: str = "efficientnet_lite0",
                      weights: str | Path | None = None, device: str = "auto",
                      ks: tuple[int, ...] = (1, 5, 10)) -> dict:
    """R@K, R@top1% and AP (fractions) of the frozen pretrained encoder on the test split of `root`,
    distractors kept, plus the query and gallery counts."""
    root = Path(root)
    q_paths, q_labels = _images(root / "test" / "query_street")
    g_paths, g_labels = _images(root / "test" / "gallery_satellite")
    if not q_paths or not g_paths:
        raise ValueError(f"{root / 'test'}: no street queries or no gallery satellite tiles")
    enc = frozen_encoder(device, name=encoder, weights=weights)
    q = embed_paths(enc, q_paths, image_size=image_size, device=device)
    g = embed_paths(enc, g_paths, image_size=image_size, device=device)
    m = summarize(rank_all(q, g, q_labels, g_labels).positions, len(g_paths), ks)
    out = {"queries": m.n_queries, "gallery": len(g_paths), "image_size": image_size}
    out.update({f"R@{k}": float(m.recall[k]) for k in ks})
    out["R@top1%"] = float(m.recall_top1pct)
    out["AP"] = float(m.ap)
    return out
