"""The ablation study: the same training budget for the full model and each part removed, over seeds.

Each run is a work dir of its own under WORKDIR/ablation/<variant>-s<seed>/ whose upstream stages
(data, reconstruct, render, enhance) are links to the main work dir's, so the 3D cache and the
GREM lists are computed once and only train, index and evaluate run per variant and seed. The frozen
encoder's render features (train/render_features) are shared by every run through one cache,
WORKDIR/ablation/render_features: the encoder is frozen, so they are the same for all variants.
"""
from __future__ import annotations

import copy
import csv
import os
import statistics
import time
from pathlib import Path

import numpy as np

from pipeline.cache import atomic_write_json, atomic_write_text, read_json, workdir_lock
from pipeline.config import Config
from pipeline.log import log
from pipeline.stage import run_stage
from pipeline.stages import get_stage

VARIANTS: dict[str, tuple[str, dict]] = {
    "full": ("full model (the recipe as configured)", {}),
    "no3d": ("without the 3D bridge", {"use_3d": False}),
    "gem": ("without PAFA (GeM pooling)", {"head": "gem"}),
    "nogrem": ("without GREM", {"use_grem": False}),
    "nossl": ("without the self-supervised term", {"ssl_weight": 0.0}),
    "ssl": ("with the paper's self-supervised term (weight 3)", {"ssl_weight": 3.0}),
    "nodrone": ("without drone-satellite pairs", {"w_drone_satellite": 0.0}),
    "nohard": ("without hard negatives", {"neighbour_sampling": False, "similarity_sampling": False}),
    "nogeo": ("without geometric targets", {"w_geometry": 0.0}),
    "norender": ("without the image slot (renders or a second drone image)",
                 {"w_render_satellite": 0.0, "w_render_street": 0.0}),
    "renders": ("renders in the image slot (instead of a second drone image)", {"render_satellite_source": "renders"}),
    "drone2": ("a second drone image in the image slot (instead of renders)", {"render_satellite_source": "drone"}),
}
SHARED = ("data", "reconstruct", "render", "enhance")
PER_RUN = ("train", "index", "evaluate")
FEATURES = "render_features"   # retrieval.train_data.FEATURES_DIR
METRICS = ("R@1", "R@5", "R@10", "AP")


def variant_config(cfg: Config, variant: str, seed: int) -> Config:
    if variant not in VARIANTS:
        raise ValueError(f"unknown ablation variant {variant!r} (known: {', '.join(VARIANTS)})")
    out = copy.deepcopy(cfg)
    for k, v in VARIANTS[variant][1].items():
        if not hasattr(out.train, k):
            raise ValueError(f"ablation variant {variant!r} needs train.{k}, which this TrainConfig lacks")
        setattr(out.train, k, v)
    out.train.seed = seed
    return out


def run_ablation(cfg: Config, workdir: Path, seeds: int = 3, variants: list[str] | None = None,
                 report: bool = True) -> dict:
    """Train, index and evaluate each variant for each seed (finished runs are reused from their
    cache), write ablation/results.json and table.md, and with `report` rebuild the main work dir's
    report so that it shows the table (that trains the main work dir's model if it is not cached)."""
    workdir = Path(workdir)
    variants = variants or list(VARIANTS)
    for v in variants:
        variant_config(cfg, v, 0)  # fail fast on a bad name before any work
    same = [v for v in variants if v != "full" and variant_config(cfg, v, 0) == variant_config(cfg, "full", 0)]
    if same:   # e.g. "nossl" where the config has no self-supervised term: it would train the full model again
        log.warning("ablation: %s equal the full model with this config; skipped", ", ".join(same))
        variants = [v for v in variants if v not in same]
    with workdir_lock(workdir):
        for name in SHARED:
            run_stage(get_stage(name), cfg, workdir)
    results: dict[str, dict] = {}
    for variant in variants:
        runs = []
        for seed in range(seeds):
            run_dir = workdir / "ablation" / f"{variant}-s{seed}"
            link_shared(workdir, run_dir)
            link_features(workdir / "ablation" / FEATURES, run_dir)
            vcfg = variant_config(cfg, variant, seed)
            log.info("ablation: %s, seed %d", variant, seed)
            t0 = time.time()
            with workdir_lock(run_dir):
                for name in PER_RUN:
                    run_stage(get_stage(name), vcfg, run_dir)
            metrics = read_json(run_dir / "evaluate" / "metrics.json") or {}
            train_manifest = read_json(run_dir / "train" / "manifest.json") or {}
            runs.append({**task_metrics(metrics, "street->satellite"), "seed": seed,
                         "drone->satellite": task_metrics(metrics, "drone->satellite"),
                         "train_s": (train_manifest.get("timings") or {}).get("seconds"),
                         "run_s": round(time.time() - t0, 1)})
        results[variant] = {"label": VARIANTS[variant][0], "runs": runs, **aggregate_runs(runs)}
    _paired_differences(results, workdir, seeds)
    baseline = _colour_baseline(workdir)
    pretrained = _pretrained_baseline(workdir, cfg)
    # University-1652's main task, the near half of the bridge, beside its two floors
    full_drone = [r["drone->satellite"] for r in results["full"]["runs"]] if "full" in results else []
    drone = {"full": aggregate_runs(full_drone), "baseline": _colour_baseline(workdir, "drone"),
             "pretrained": _pretrained_baseline(workdir, cfg, "drone")}
    payload = {"seeds": seeds, "variants": results, "baseline": baseline, "pretrained": pretrained, "drone": drone,
               "train": _train_budget(cfg)}
    atomic_write_json(workdir / "ablation" / "results.json", payload)
    table = format_ablation(payload)
    atomic_write_text(workdir / "ablation" / "table.md", table + "\n")
    print(table)
    if not report:
        return payload
    # The report's cache key cannot see ablation/results.json: rebuild it so the table shows up.
    with workdir_lock(workdir):
        for name in ("train", "index", "evaluate", "report"):
            run_stage(get_stage(name), cfg, workdir, force=name == "report")
    return payload


def link_shared(workdir: Path, run_dir: Path) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in SHARED:
        link = run_dir / name
        target = os.path.relpath(workdir / name, run_dir)
        if link.is_symlink() and os.readlink(link) == target:
            continue
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(target, target_is_directory=True)


def link_features(shared: Path, run_dir: Path) -> None:
    """run_dir/train/render_features -> the shared cache (its index.json keys each building's files)."""
    shared.mkdir(parents=True, exist_ok=True)
    link = run_dir / "train" / FEATURES
    link.parent.mkdir(parents=True, exist_ok=True)
    target = os.path.relpath(shared, link.parent)
    if link.is_symlink() and os.readlink(link) == target:
        return
    if link.is_symlink() or link.is_file():
        link.unlink()
    elif link.is_dir():  # an older run's private cache: move its files into the shared one
        for f in link.iterdir():
            if not (shared / f.name).exists():
                os.replace(f, shared / f.name)
            else:
                f.unlink()
        link.rmdir()
    link.symlink_to(target, target_is_directory=True)


def task_metrics(metrics: dict, task: str) -> dict:
    """R@K and AP of one task of metrics.json; another layout's task of the same query view (e.g. the
    UAVM2025 street task) when that name is absent."""
    tasks = metrics.get("tasks", metrics)
    view = task.split("->")[0]
    m = tasks.get(task) or next((v for k, v in tasks.items() if isinstance(v, dict) and view in k.split("->")[0]), {})
    return {k: float(m[k]) for k in METRICS if k in m}


def aggregate_runs(runs: list[dict]) -> dict:
    out = {}
    for k in METRICS:
        vals = [r[k] for r in runs if k in r]
        if vals:
            out[k] = {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0}
    return out


RANKS_CSV = "ranks_street-satellite.csv"   # written by the evaluate stage
PAIRED = ("R@1", "R@5", "AP")


def per_query_run(run_dir: Path, ranks_csv: str = RANKS_CSV) -> dict[str, np.ndarray]:
    """Per-query hit at 1 and 5 and AP of one run, in query-name order, from its ranks CSV (which
    holds each query's first match and AP, all the hits need)."""
    from retrieval.metrics import per_query_scores

    path = run_dir / "evaluate" / ranks_csv
    with open(path, newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["query"])
    firsts = [np.array([int(r["first_match_rank"]) - 1]) if r["first_match_rank"] else np.array([], np.int64)
              for r in rows]
    hits = per_query_scores(firsts, ks=(1, 5))
    return {"queries": np.array([r["query"] for r in rows]), "R@1": hits["R@1"], "R@5": hits["R@5"],
            "AP": np.array([float(r["ap"] or 0.0) for r in rows])}


def _paired_differences(results: dict, workdir: Path, seeds: int) -> None:
    """variant - full on the same queries (per-query scores averaged over seeds), in percent, with a
    bootstrap interval over the queries: whether a part's effect stands out of the query noise."""
    from retrieval.metrics import bootstrap_ci

    def seed_mean(variant: str) -> dict[str, np.ndarray] | None:
        runs = [per_query_run(workdir / "ablation" / f"{variant}-s{s}") for s in range(seeds)]
        if any(not np.array_equal(r["queries"], runs[0]["queries"]) for r in runs):
            return None
        return {k: np.mean([r[k] for r in runs], axis=0) for k in PAIRED}

    def safe_seed_mean(variant: str) -> dict[str, np.ndarray] | None:
        try:
            return seed_mean(variant)
        except (OSError, KeyError, ValueError) as e:   # a table without this row beats losing the runs
            log.warning("ablation: no paired difference for %s (%s)", variant, e)
            return None

    full = safe_seed_mean("full") if "full" in results else None
    if full is None:
        return
    for variant, entry in results.items():
        other = None if variant == "full" else safe_seed_mean(variant)
        if other is None or len(other["R@1"]) != len(full["R@1"]):
            continue
        entry["delta_vs_full"] = {k: {"mean": 100 * float(np.mean(other[k] - full[k])),
                                      "ci95": [100 * x for x in bootstrap_ci(other[k] - full[k])]} for k in PAIRED}


def _colour_baseline(workdir: Path, query: str = "street") -> dict | None:
    """The trivial colour-histogram matcher on the same test split: how easy the world is."""
    try:
        from synthetic.baseline import colour_histogram_recall
    except ImportError:
        return None
    tree = workdir / "data" / "tree"
    if not (tree / "test" / f"query_{query}").exists():
        return None
    res = colour_histogram_recall(tree, query=query)
    # the matcher reports fractions; the table and the report are in percent like metrics.json
    return {k: (100.0 * v if k.startswith(("R@", "AP", "chance")) else v) for k, v in res.items()}


def _pretrained_baseline(workdir: Path, cfg: Config, query: str = "street") -> dict | None:
    """The frozen ImageNet encoder without cross-view training, at the training image size."""
    from retrieval.baselines import pretrained_recall

    tree = workdir / "data" / "tree"
    if not (tree / "test" / f"query_{query}").exists():
        return None
    res = pretrained_recall(tree, image_size=cfg.train.image_size, encoder=cfg.train.backbone,
                            weights=cfg.train.backbone_weights, device=cfg.train.device, query=query)
    return {k: (100.0 * v if k.startswith(("R@", "AP")) else v) for k, v in res.items()}


def _train_budget(cfg: Config) -> dict:
    t = cfg.train
    return {k: getattr(t, k) for k in ("epochs", "batch_size", "image_size") if hasattr(t, k)}


def format_ablation(payload: dict) -> str:
    seeds = payload.get("seeds", 1)
    lines = [f"street->satellite on the test split, mean ± std over {seeds} seed(s), same training budget",
             "", "| variant | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for v in payload["variants"].values():
        cells = [f"{v[k]['mean']:.2f} ± {v[k]['std']:.2f}" if k in v else "-" for k in METRICS]
        lines.append(f"| {v['label']} | " + " | ".join(cells) + " |")
    p = payload.get("pretrained")
    if p:
        cells = [f"{float(p[k]):.2f}" if k in p else "-" for k in METRICS]
        lines.append("| pretrained encoder, no cross-view training (GeM) | " + " | ".join(cells) + " |")
    b = payload.get("baseline")
    if b:
        cells = [f"{float(b[k]):.2f}" if k in b else "-" for k in METRICS]
        lines.append("| colour-histogram matcher (no learning) | " + " | ".join(cells) + " |")
        if "chance_R@1" in b:
            lines.append(f"| chance (1 / gallery of {b.get('gallery', '?')}) | {float(b['chance_R@1']):.2f} | - | - | - |")
    dr = payload.get("drone") or {}
    if dr.get("full") or dr.get("pretrained") or dr.get("baseline"):
        def fmt(m: dict | None) -> str:
            if not m:
                return "-"
            return " / ".join(f"{k} {m[k]['mean'] if isinstance(m[k], dict) else float(m[k]):.2f}"
                              for k in ("R@1", "R@5", "AP") if k in m)
        lines += ["", f"drone->satellite: full model {fmt(dr.get('full'))}; pretrained encoder "
                  f"{fmt(dr.get('pretrained'))}; colour histogram {fmt(dr.get('baseline'))}"]
    deltas = [(v["label"], v["delta_vs_full"]) for v in payload["variants"].values() if v.get("delta_vs_full")]
    if deltas:
        lines += ["", "variant - full model on the same queries (per-query scores averaged over the seeds), with a "
                  "95% bootstrap interval over the queries; an interval that holds 0: no effect beyond the query noise",
                  "", "| variant | " + " | ".join(f"Δ{k}" for k in PAIRED) + " |", "|---|" + "---|" * len(PAIRED)]
        for label, d in deltas:
            cells = [f"{d[k]['mean']:+.2f} [{d[k]['ci95'][0]:+.1f}, {d[k]['ci95'][1]:+.1f}]" for k in PAIRED]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
