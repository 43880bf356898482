"""Stage `report`: one static HTML page of the whole run, `WORKDIR/report/index.html`, figures beside it."""
from __future__ import annotations

from pipeline.stage import Stage, StageContext
from retrieval.paths import record_path


def run(ctx: StageContext) -> dict:
    from pipeline.report import build_report

    report = build_report(ctx.workdir, ctx.out, ctx.section, title=f"SkyLink report: {ctx.config.name}")
    return {"page": record_path(report.page, ctx.workdir), "sections": len(report.sections), "missing": report.missing}


STAGE = Stage(name="report", sections=("report",),
              needs=("data", "reconstruct", "render", "enhance", "train", "index", "evaluate"), run=run,
              help="the HTML report WORKDIR/report/index.html")
