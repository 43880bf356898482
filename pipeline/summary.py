"""The one-screen summary `skylink run` prints at the end: what was built, where the report is, and the
headline street -> satellite figures with their 95% intervals beside the colour histogram and chance."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import MANIFEST, read_json

HEADLINE_TASK = "street->satellite"
HEADLINE = ("R@1", "R@5", "R@10", "AP")


@dataclass
class StageRun:
    """How one stage went in this run: served from the cache or computed, and its wall time."""

    name: str
    cached: bool
    seconds: float


def run_summary(workdir: Path, runs: list[StageRun], title: str = "SkyLink") -> str:
    """The summary text (about 15 lines) of a run over `workdir`'s stages."""
    workdir = Path(workdir)
    lines = [f"== {title}: work dir {workdir.resolve()} =="]
    lines += _stage_lines(runs)
    lines += _built_lines(workdir)
    lines += _metric_lines(workdir)
    if any(r.name == "report" for r in runs) and (workdir / "report" / "index.html").is_file():
        lines.append(f"report:  {(workdir / 'report' / 'index.html').resolve()}")
    answer = workdir / "evaluate" / "answer.zip"
    if any(r.name == "evaluate" for r in runs) and answer.is_file():
        lines.append(f"answer:  {answer.resolve()} (UAVM2025 submission)")
    return "\n".join(lines)


def _stage_lines(runs: list[StageRun], per_line: int = 4) -> list[str]:
    cells = [f"{r.name} {'cached' if r.cached else f'{r.seconds:.1f} s'}" for r in runs]
    rows = [" · ".join(cells[i:i + per_line]) for i in range(0, len(cells), per_line)]
    computed = sum(not r.cached for r in runs)
    total = f"({computed} computed, {len(runs) - computed} cached, {sum(r.seconds for r in runs):.1f} s in all)"
    if not rows:
        return []
    rows[-1] += f"  {total}"
    return [("stages:  " if i == 0 else " " * 9) + row for i, row in enumerate(rows)]


def _summary(workdir: Path, stage: str) -> dict:
    m = read_json(workdir / stage / MANIFEST) or {}
    return (m.get("summary") or {}) if m.get("finished") else {}


def _built_lines(workdir: Path) -> list[str]:
    parts = []
    data = _summary(workdir, "data")
    if data.get("images") is not None:
        splits: dict[str, int] = {}
        for row in data.get("table") or []:
            splits[row.get("split", "?")] = splits.get(row.get("split", "?"), 0) + int(row.get("images", 0))
        by_split = ", ".join(f"{k} {v}" for k, v in sorted(splits.items()))
        parts.append(f"{data['images']} images" + (f" ({by_split})" if by_split else ""))
    rec = _summary(workdir, "reconstruct")
    if rec.get("buildings") is not None:
        parts.append(f"{rec.get('ok', 0)}/{rec['buildings']} buildings reconstructed, "
                     f"{rec.get('registered', 0)}/{rec.get('images', 0)} drone images registered")
    ren = _summary(workdir, "render")
    if ren.get("buildings") is not None:
        parts.append(f"{ren.get('ok', 0)} rendered ({ren.get('views', '?')} views at {ren.get('image_size', '?')} px)")
    lines = ["built:   " + "; ".join(parts)] if parts else []
    more = []
    enh = _summary(workdir, "enhance")
    if enh.get("google") is not None:
        more.append(f"GREM kept {enh.get('kept', 0)}/{enh['google']} google images")
    tr = _summary(workdir, "train")
    if tr.get("epochs") is not None:
        speed = f" at {tr['images_per_s']:.1f} images/s" if isinstance(tr.get("images_per_s"), (int, float)) else ""
        more.append(f"trained {tr['epochs']} epoch(s){speed}")
    if more:
        lines.append(" " * 9 + "; ".join(more))
    return lines


def _metric_lines(workdir: Path) -> list[str]:
    metrics = read_json(workdir / "evaluate" / "metrics.json") or {}
    tasks = metrics.get("tasks") or {}
    m = tasks.get(HEADLINE_TASK) or {}
    if "R@1" not in m:
        return ["metrics: not available (run the evaluate stage)"] if not tasks else \
            [f"metrics: {HEADLINE_TASK}: {m.get('note', 'no figures')}"]
    ci = m.get("ci95") or {}
    n_gallery = int(m.get("n_gallery") or 0)
    width = 17
    head = f"{HEADLINE_TASK}: {m.get('n_queries', '?')} queries, gallery of {n_gallery or '?'} (distractors kept), %, [95% CI]"
    rows = [head, "  " + "".ljust(width) + "".join(k.ljust(16) for k in HEADLINE)]
    cells = []
    for k in HEADLINE:
        v = m.get(k)
        c = ci.get(k)
        cells.append((f"{v:.1f}" + (f" [{c[0]:.0f}-{c[1]:.0f}]" if c else "")) if isinstance(v, (int, float)) else "-")
    rows.append("  " + "model".ljust(width) + "".join(c.ljust(16) for c in cells))
    ablation = read_json(workdir / "ablation" / "results.json") or {}
    for key, label in (("pretrained", "pretrained enc."), ("baseline", "colour histogram")):
        b = ablation.get(key) or {}
        if any(k in b for k in HEADLINE):
            rows.append("  " + label.ljust(width) + "".join(
                (f"{float(b[k]):.1f}" if k in b else "-").ljust(16) for k in HEADLINE))
    if n_gallery:
        # one true tile among n: a random ranking finds it in the top k with probability k / n
        chance = [f"{100 * min(int(k[2:]), n_gallery) / n_gallery:.1f}" if k.startswith("R@") else "-" for k in HEADLINE]
        rows.append("  " + "chance".ljust(width) + "".join(c.ljust(16) for c in chance))
    others = [f"{t} R@1 {v['R@1']:.1f}" for t, v in tasks.items() if t != HEADLINE_TASK and isinstance(v, dict) and "R@1" in v]
    if others:
        rows.append("  other tasks: " + " · ".join(others))
    return [r.rstrip() for r in rows]
