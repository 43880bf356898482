"""Stage `evaluate`: University-1652 metrics per task (distractors kept), per-query ranks, Recall@K plots
and the UAVM2025 answer.zip for street -> satellite."""
from __future__ import annotations

from pipeline.stage import Stage, StageContext


def run(ctx: StageContext) -> dict:
    from retrieval.backbone import resolve_device
    from retrieval.evaluate import evaluate_index

    cfg = ctx.section
    device = str(resolve_device(cfg.device))
    res = evaluate_index(ctx.input("index"), ctx.out, ks=cfg.ks, top_k=cfg.top_k, curve_max_k=cfg.curve_max_k,
                         device=device, index_device=ctx.config.index.device, write_answer=cfg.answer,
                         workdir=ctx.workdir)
    return {"tasks": res["tasks"], "answer": res.get("answer"), "faiss": res["faiss"]}


STAGE = Stage(name="evaluate", sections=("evaluate",), needs=("index",), run=run,
              help="R@1/5/10, R@top1%, AP per task; ranks CSV; Recall@K plot; UAVM2025 answer.zip")
