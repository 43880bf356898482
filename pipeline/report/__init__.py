"""The HTML report of a work dir: one static page (`index.html`) with its figures beside it under `img/`.

`build_report(workdir, out, cfg)` reads whatever the stages left in `workdir` and writes the page;
a section whose artifacts are absent shows one line saying so instead of failing the report.
"""
from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from pipeline.cache import _remove, atomic_write_text
from pipeline.config import ReportConfig
from pipeline.log import log
from pipeline.report.html import Section, note, page
from pipeline.report.readers import Missing
from pipeline.report.sections import IMG_DIR, SECTIONS, ReportContext

PAGE = "index.html"

__all__ = ["PAGE", "Missing", "Report", "ReportContext", "build_report", "build_sections"]


@dataclass
class Report:
    page: Path                     # the written index.html
    sections: list[Section]

    @property
    def missing(self) -> list[str]:
        """Ids of the sections that show only their one-line note."""
        return [s.id for s in self.sections if s.missing]


def build_sections(ctx: ReportContext) -> list[Section]:
    """Every section's HTML; a missing artifact or a section's own error becomes its one-line note."""
    out = []
    for sid, title, fn in SECTIONS:
        t0 = time.perf_counter()
        try:
            out.append(Section(sid, title, fn(ctx)))
        except Missing as e:
            out.append(Section(sid, title, note(f"Not available: {e}"), missing=True))
        except Exception as e:  # one broken artifact must not cost the whole page
            log.warning("report: section %r failed: %s: %s", title, type(e).__name__, e)
            log.debug("%s", traceback.format_exc())
            msg = str(e).splitlines()[0] if str(e) else ""
            out.append(Section(sid, title, note(f"Could not be built: {type(e).__name__}: {msg}"), missing=True))
        log.debug("report: section %s in %.2f s", sid, time.perf_counter() - t0)
    return out


def build_report(workdir: Path, out: Path, cfg: ReportConfig | None = None, title: str = "SkyLink report") -> Report:
    """Write `out/index.html` and its figures (`out/img/`) for the stages' artifacts in `workdir`.

    The page and its `img/` folder are built in a temporary folder and moved into place at the end, so
    a killed run leaves the previous report intact.
    """
    workdir, out = Path(workdir).resolve(), Path(out).resolve()
    cfg = cfg or ReportConfig()
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / f".tmp-site-{os.getpid()}"
    _remove(tmp)
    tmp.mkdir()
    try:
        ctx = ReportContext(workdir=workdir, site=tmp, cfg=cfg)
        sections = build_sections(ctx)
        meta = f"work dir {workdir} · generated {time.strftime('%Y-%m-%d %H:%M:%S')}"
        html = page(title, meta, sections)
        (tmp / IMG_DIR).mkdir(exist_ok=True)
        old = out / f".old-{IMG_DIR}-{os.getpid()}"
        if (out / IMG_DIR).exists():
            os.replace(out / IMG_DIR, old)
        os.replace(tmp / IMG_DIR, out / IMG_DIR)
        atomic_write_text(out / PAGE, html)
        _remove(old)
    finally:
        _remove(tmp)
    missing = [s.title for s in sections if s.missing]
    log.info("report: %s (%d sections%s)", out / PAGE, len(sections),
             f"; not available: {', '.join(missing)}" if missing else "")
    return Report(out / PAGE, sections)
