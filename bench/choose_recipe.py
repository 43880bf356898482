"""Recipe choices on the validation world: candidates trained side by side, over seeds, paired on the same queries.

    python bench/choose_recipe.py --config assets/configs/validation.yaml \
        --candidate ref: --candidate nossl:train.ssl_weight=0 --seeds 3 [--reference ref]

Each candidate is a name and `section.key=value` overrides (comma-separated; none for the reference).
Every run is WORKDIR/choices/<name>-s<seed>, whose upstream stages (data, reconstruct, render,
enhance) link to the work dir's as in `skylink ablate`, so only train, index and evaluate run per
candidate and seed; finished runs are reused. Prints a table of street->satellite and drone->satellite
(mean ± std over seeds) and each candidate's paired difference to the reference on the same queries
(per-query scores averaged over seeds) with a 95% bootstrap interval; writes WORKDIR/choices/results.json.
This is where defaults are chosen: never on the demo's test split.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.ablation import (  # noqa: E402
    FEATURES, PAIRED, PER_RUN, SHARED, aggregate_runs, link_features, link_shared, per_query_run, task_metrics)
from pipeline.cache import atomic_write_json, read_json, workdir_lock  # noqa: E402
from pipeline.config import load_config  # noqa: E402
from pipeline.stage import run_stage  # noqa: E402
from pipeline.stages import get_stage  # noqa: E402
from retrieval.metrics import bootstrap_ci  # noqa: E402

TASKS = ("street->satellite", "drone->satellite")


def parse_candidate(text: str) -> tuple[str, list[str]]:
    name, _, sets = text.partition(":")
    if not name or "/" in name:
        raise SystemExit(f"--candidate {text!r}: expected NAME:section.key=value[,section.key=value]")
    return name, [s for s in sets.split(",") if s]


def run_candidate(config: Path, base_sets: list[str], sets: list[str], workdir: Path, run_dir: Path, seed: int) -> dict:
    cfg = load_config(config, base_sets + sets + [f"train.seed={seed}"])
    link_shared(workdir, run_dir)
    link_features(workdir / "choices" / FEATURES, run_dir)
    with workdir_lock(run_dir):
        for name in PER_RUN:
            run_stage(get_stage(name), cfg, run_dir)
    return read_run(run_dir, seed)


def read_run(run_dir: Path, seed: int) -> dict:
    metrics = read_json(run_dir / "evaluate" / "metrics.json")
    if metrics is None:
        raise SystemExit(f"{run_dir}: no evaluate/metrics.json (run it first, without --no-run)")
    history = read_json(run_dir / "train" / "history.json") or [{}]
    return {"seed": seed, "train_s": round(sum(h.get("seconds", 0.0) for h in history), 1),
            "threads": history[-1].get("threads"), **{task: task_metrics(metrics, task) for task in TASKS}}


def paired(ref_dirs: list[Path], dirs: list[Path], task: str = "street->satellite") -> dict:
    def mean_over_seeds(ds: list[Path]) -> dict[str, np.ndarray]:
        runs = [per_query_run(d, f"ranks_{task.replace('->', '-')}.csv") for d in ds]
        return {k: np.mean([r[k] for r in runs], axis=0) for k in PAIRED}
    a, b = mean_over_seeds(ref_dirs), mean_over_seeds(dirs)
    return {k: {"mean": 100 * float(np.mean(b[k] - a[k])), "ci95": [100 * x for x in bootstrap_ci(b[k] - a[k])]}
            for k in PAIRED}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=REPO / "assets" / "configs" / "validation.yaml")
    ap.add_argument("--workdir", type=Path, help="default work/<config name>")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="override for every candidate")
    ap.add_argument("--candidate", action="append", required=True, help="NAME:section.key=value[,...]")
    ap.add_argument("--reference", help="candidate the others are compared with (default: the first)")
    ap.add_argument("--seeds", type=int, default=3, help="train seeds 0 .. N-1")
    ap.add_argument("--seed-list", help="these train seeds instead (e.g. 2, or 0,2): to spread a candidate's "
                    "seeds over processes side by side, then read them all with --no-run")
    ap.add_argument("--no-run", action="store_true",
                    help="only read finished runs (e.g. candidates trained by separate processes side by side)")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path("work") / args.config.stem
    seeds = [int(x) for x in args.seed_list.split(",")] if args.seed_list else list(range(args.seeds))
    cands = dict(parse_candidate(c) for c in args.candidate)
    ref = args.reference or next(iter(cands))
    if ref not in cands:
        raise SystemExit(f"--reference {ref!r} is not a candidate ({', '.join(cands)})")
    base = load_config(args.config, args.sets)
    if not args.no_run:
        with workdir_lock(workdir):
            for name in SHARED:
                run_stage(get_stage(name), base, workdir)
    run_dir = lambda name, seed: workdir / "choices" / f"{name}-s{seed}"  # noqa: E731
    results: dict[str, dict] = {}
    for name, sets in cands.items():
        runs = [read_run(run_dir(name, s), s) if args.no_run
                else run_candidate(args.config, args.sets, sets, workdir, run_dir(name, s), s) for s in seeds]
        results[name] = {"overrides": sets, "runs": runs,
                         **{task: aggregate_runs([r[task] for r in runs]) for task in TASKS}}
    for name in cands:
        if name != ref:
            results[name]["delta_vs_" + ref] = {
                task: paired([run_dir(ref, s) for s in seeds], [run_dir(name, s) for s in seeds], task)
                for task in TASKS}
    payload = {"config": str(args.config), "world_seed": base.synth.seed, "sets": args.sets, "seeds": seeds,
               "reference": ref, "machine": platform.machine(), "candidates": results}
    atomic_write_json(workdir / "choices" / "results.json", payload)
    print(json.dumps(payload))
    print(format_table(payload))
    return 0


def format_table(payload: dict) -> str:
    ref = payload["reference"]
    lines = [f"world of {Path(payload['config']).stem} (seed {payload['world_seed']}), train seeds {payload['seeds']}, mean ± std",
             "", "| candidate | overrides | street R@1 | street R@5 | street AP | drone R@1 | train s |",
             "|---|---|---|---|---|---|---|"]
    for name, c in payload["candidates"].items():
        s, d = c["street->satellite"], c["drone->satellite"]
        cell = lambda m, k: f"{m[k]['mean']:.2f} ± {m[k]['std']:.2f}" if k in m else "-"  # noqa: E731
        secs = np.mean([r["train_s"] for r in c["runs"]])
        over = ", ".join(c["overrides"]) or "(none)"
        lines.append(f"| {name}{' (reference)' if name == ref else ''} | {over} | {cell(s, 'R@1')} | {cell(s, 'R@5')} "
                     f"| {cell(s, 'AP')} | {cell(d, 'R@1')} | {secs:.0f} |")
    lines += ["", f"candidate - {ref}, paired on the same queries (per-query scores averaged over the seeds), "
              "95% bootstrap interval", "",
              "| candidate | street ΔR@1 | street ΔR@5 | street ΔAP | drone ΔR@1 | drone ΔAP |", "|---|---|---|---|---|---|"]
    fmt = lambda d, k: f"{d[k]['mean']:+.2f} [{d[k]['ci95'][0]:+.1f}, {d[k]['ci95'][1]:+.1f}]"  # noqa: E731
    for name, c in payload["candidates"].items():
        d = c.get("delta_vs_" + ref)
        if d:
            st, dr = d["street->satellite"], d["drone->satellite"]
            lines.append(f"| {name} | " + " | ".join([fmt(st, k) for k in PAIRED] + [fmt(dr, "R@1"), fmt(dr, "AP")]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
