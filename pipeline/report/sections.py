"""The sections of the report page, one function each: read a stage's artifacts, write figures, return HTML.

A section raises `Missing` with one line when what it shows is absent (a stage that did not run, a
file that was not written); the page then shows that line instead of the section.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from pipeline.cache import MANIFEST, read_json, skylink_version
from pipeline.config import ReportConfig
from pipeline.log import log
from pipeline.report import plots
from pipeline.report.html import Col, caption, esc, figure, fmt, grid, note, table
from pipeline.report.readers import (
    Missing,
    QueryRanks,
    cmc_from_ranks,
    find_event_files,
    read_history,
    read_json_file,
    read_map,
    read_ply,
    read_ranks_csv,
    read_tensorboard_scalars,
)

UPSTREAM = ("data", "reconstruct", "render", "enhance", "train", "index", "evaluate")
IMG_DIR = "img"
STREET_TASK = "street->satellite"


@dataclass
class ReportContext:
    """Where the report reads (`workdir`) and writes (`site`: the page's folder, figures under img/)."""

    workdir: Path
    site: Path
    cfg: ReportConfig
    _manifests: dict[str, dict] = field(default_factory=dict)

    def manifest(self, stage: str) -> dict:
        """A stage's finished manifest, or Missing saying that the stage has not run."""
        if stage not in self._manifests:
            path = self.workdir / stage / MANIFEST
            m = read_json(path)
            if m is None:
                raise Missing(f"stage {stage!r} has not run (no {path})")
            if not m.get("finished"):
                raise Missing(f"stage {stage!r} has not finished ({path})")
            self._manifests[stage] = m
        return self._manifests[stage]

    def ok_items(self, stage: str) -> list[str]:
        items = self.manifest(stage).get("items") or {}
        return sorted(k for k, v in items.items() if v.get("status") == "ok")

    def img(self, name: str) -> Path:
        p = self.site / IMG_DIR / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def rel(self, path: Path) -> str:
        return Path(path).relative_to(self.site).as_posix()

    def copy_image(self, src: Path, name: str) -> str:
        dst = self.img(name)
        shutil.copyfile(src, dst)
        return self.rel(dst)

    def thumbnail(self, src: Path, max_px: int = 256) -> str | None:
        """A small JPEG copy of an image beside the page (relative link), None when it cannot be read."""
        import cv2

        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        if img is None:
            return None
        h, w = img.shape[:2]
        s = max_px / max(h, w)
        if s < 1:
            img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        key = hashlib.sha1(str(Path(src).resolve()).encode()).hexdigest()[:12]
        dst = self.img(f"thumbs/{Path(src).stem[:40]}-{key}.jpg")
        if not dst.exists():
            cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, 88])
        return self.rel(dst)

    def data_root(self) -> Path | None:
        """The dataset tree the upstream stages read (names in the evaluate CSVs are relative to it)."""
        from retrieval.paths import recorded_path

        cands = []
        m = read_json(self.workdir / "data" / MANIFEST) or {}
        if (m.get("summary") or {}).get("root"):
            cands.append(recorded_path(m["summary"]["root"], self.workdir))
        meta = read_json(self.workdir / "index" / "index.json") or {}
        if meta.get("root"):
            cands.append(recorded_path(meta["root"], self.workdir))
        cands.append(self.workdir / "data" / "tree")
        return next((p for p in cands if p.is_dir()), None)


def nonempty(cols: list[Col], rows: list[dict], keep: tuple[str, ...] = ()) -> list[Col]:
    """The columns that have a value in at least one row (or are named in `keep`)."""
    return [c for c in cols if c.key in keep or any(r.get(c.key) not in (None, "") for r in rows)]


def _mapper_cell(q: dict) -> str | None:
    """The mapper whose model was kept and, where both ran, what the cross-check did."""
    check = q.get("mapper_check")
    if not check:
        return q.get("mapper")
    if check["kept"] == "incremental" and check.get("agreement") is not None:
        return f"incremental (global broken: {check['agreeing']}/{check['common']} agree)"
    dropped, again = len(check.get("dropped") or []), len(check.get("reregistered") or [])
    if not dropped:
        return check["kept"]
    return check["kept"] + f" ({dropped} disputed dropped" + (f", {again} registered again)" if again else ")")


def _pct(x: float | None, digits: int = 1) -> str | None:
    return None if x is None else f"{100 * float(x):.{digits}f}%"


# --- overview --------------------------------------------------------------------------------------

def overview(ctx: ReportContext) -> str:
    rows, other_version = [], []
    for stage in UPSTREAM:
        m = read_json(ctx.workdir / stage / MANIFEST)
        if m is None:
            rows.append({"stage": stage, "status": "not run", "cls": "failed"})
            continue
        counts = m.get("counts") or {}
        built_by = (m.get("versions") or {}).get("skylink") or "unknown"
        if built_by != skylink_version():
            other_version.append(f"{stage} ({built_by})")
        rows.append({
            "stage": stage,
            "version": built_by,
            "status": "finished" if m.get("finished") else "unfinished",
            "finished_at": str(m.get("finished_at") or "").replace("T", " ") or None,
            "seconds": (m.get("timings") or {}).get("seconds"),
            "ok": counts.get("ok"), "failed": counts.get("failed"), "cached": counts.get("cached"),
            "summary": _short_summary(m.get("summary") or {}),
            "cls": "failed" if counts.get("failed") or not m.get("finished") else "",
        })
    cols = [Col("stage", "stage", text=True), Col("status", "status", text=True), Col("finished", "finished_at", text=True),
            Col("seconds", "seconds", digits=1), Col("items ok", "ok"), Col("failed", "failed"), Col("cached", "cached"),
            Col("summary", "summary", text=True), Col("SkyLink", "version", text=True)]
    html = table(rows, nonempty(cols, rows, keep=("stage", "status")), row_class="cls")
    if other_version:  # kept as they are (a cache is never rebuilt on its own); the reader should know
        html = note(f"Built by another SkyLink version than this one ({skylink_version()}): "
                    f"{', '.join(other_version)}. Re-run them with --force to rebuild.") + html
    return html


def _short_summary(summary: dict, n: int = 5) -> str:
    """The first few scalar entries of a stage's summary (what `skylink run` prints per stage)."""
    parts = []
    for k, v in summary.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, str)) or len(str(v)) > 40 or k == "root":
            continue
        parts.append(f"{k} {fmt(v, 3) if isinstance(v, float) else v}")
        if len(parts) == n:
            break
    return ", ".join(parts)


# --- dataset ---------------------------------------------------------------------------------------

def dataset(ctx: ReportContext) -> str:
    summary = ctx.manifest("data").get("summary") or {}
    rows = summary.get("table")
    if not rows:
        raise Missing("the data stage's manifest has no summary table")
    totals = {"split": "total", "folder": "", "buildings": None, "images": sum(int(r.get("images", 0)) for r in rows)}
    html = table([*rows, totals], [Col("split", "split", text=True), Col("folder", "folder", text=True),
                                   Col("buildings", "buildings"), Col("images", "images")])
    html += caption(f"dataset root: {summary.get('root', '?')}")
    root = ctx.data_root()
    if root and (root / "meta" / "preview").is_dir():
        # the generator's overview of the region first, then the contact sheets of a few buildings
        sheets = sorted((root / "meta" / "preview").glob("*.png"), key=lambda p: (p.stem != "overview", p.stem))[:3]
        figs = [figure(t, "the region" if p.stem == "overview" else f"building {p.stem}")
                for p in sheets if (t := ctx.thumbnail(p, 1400))]
        if figs:
            html += "<h3>The synthetic world</h3>" + grid(figs, 900)
    return html


# --- reconstruction --------------------------------------------------------------------------------

def _scales(d: Path) -> list[int]:
    return sorted(int(p.stem[5:]) for p in d.glob("scale*.ply") if p.stem[5:].isdigit())


def reconstruction(ctx: ReportContext) -> str:
    m = ctx.manifest("reconstruct")
    items = m.get("items") or {}
    if not items:
        raise Missing("the reconstruct stage recorded no buildings")
    rows, ok_ids = [], []
    for bid, rec in sorted(items.items()):
        row: dict = {"building": bid, "status": rec.get("status", "?"), "seconds": rec.get("seconds")}
        if rec.get("status") != "ok":
            row |= {"note": rec.get("reason", ""), "cls": "failed"}
            rows.append(row)
            continue
        ok_ids.append(bid)
        q = read_json(ctx.workdir / "reconstruct" / bid / "quality.json")
        if q is None:
            row["note"] = "quality.json missing"
            rows.append(row)
            continue
        gt = q.get("ground_truth") or {}
        pps = q.get("points_per_scale") or {}
        row |= {
            "registered": f"{q.get('registered', '?')}/{q.get('total', '?')}",
            "ratio": _pct(q.get("registered_ratio"), 0),
            "reproj": q.get("mean_reprojection_error"),
            "track": q.get("mean_track_length"),
            "points": " / ".join(f"{int(pps[k]):,}" for k in sorted(pps, key=int)) if pps else None,
            "cam_err": _pct(gt.get("camera_error_rel_median"), 2),
            "rot_err": gt.get("relative_rotation_error_deg_median"),
            "mesh": _pct(gt.get("mesh_distance_rel_median"), 2),
            "mesh90": _pct(gt.get("mesh_distance_rel_p90"), 2),
            "align": (q.get("alignment") or {}).get("method"),
            "mapper": _mapper_cell(q),
            "seconds": (q.get("seconds") or {}).get("total", rec.get("seconds")),
        }
        rows.append(row)
    cols = [Col("building", "building", text=True), Col("status", "status", text=True), Col("registered", "registered"),
            Col("ratio", "ratio"), Col("reproj. error (px)", "reproj"), Col("track length", "track"),
            Col("points per scale", "points"), Col("camera error (% orbit)", "cam_err"),
            Col("rel. rotation error (°)", "rot_err", digits=3), Col("point-mesh median (% size)", "mesh"),
            Col("p90", "mesh90"), Col("aligned by", "align", text=True), Col("mapper", "mapper", text=True),
            Col("seconds", "seconds", digits=1),
            Col("note", "note", text=True)]
    cols = nonempty(cols, rows, keep=("building", "status"))  # e.g. no ground-truth errors on real data
    n_failed = sum(1 for r in rows if r["status"] != "ok")
    html = caption(f"{len(ok_ids)} of {len(rows)} buildings reconstructed" + (f", {n_failed} failed" if n_failed else "")
                   + "; errors against the synthetic ground truth after a similarity alignment.")
    html += table(rows, cols, row_class="cls")
    html += geometry_quality(ctx, ok_ids)
    if not ctx.cfg.snapshots:
        return html + note("point-cloud snapshots are off (report.snapshots: false)")
    figs, problems = [], []
    for bid in ok_ids[: ctx.cfg.max_buildings]:
        d = ctx.workdir / "reconstruct" / bid
        try:  # one unreadable cloud costs its snapshot, not the section
            clouds = cloud_panels(d)
        except (ValueError, OSError, RuntimeError, Missing) as e:
            problems.append(f"building {bid}: no snapshot ({e})")
            continue
        if not clouds:
            continue
        path = plots.plot_point_clouds(clouds, ctx.img(f"cloud_{bid}.png"))
        dense = any(k.startswith("dense") for k in clouds)
        figs.append(figure(ctx.rel(path), f"building {bid}: " + (
            "dense cloud beside the sparse one, all scales (oblique view, colours from the drone images)" if dense
            else "point cloud per scale (oblique view, colours from the drone images)")))
    html += "<h3>Point clouds per scale</h3>"
    html += grid(figs, 620) if figs else note("no scale{k}.ply point clouds found in the reconstruct dir")
    html += "".join(note(p) for p in problems)
    if len(ok_ids) > ctx.cfg.max_buildings:
        html += caption(f"first {ctx.cfg.max_buildings} of {len(ok_ids)} buildings shown (report.max_buildings)")
    return html


def cloud_panels(d: Path) -> dict[str, tuple]:
    """Snapshot panels of one reconstruction: the dense cloud (all scales) beside the sparse one where the
    reconstruction kept them apart (`sparse_scale{k}.ply`), else one panel per scale."""
    scales = _scales(d)
    sparse = [d / f"sparse_scale{k}.ply" for k in scales if (d / f"sparse_scale{k}.ply").is_file()]
    if not sparse:
        return {f"scale {k}": read_ply(d / f"scale{k}.ply") for k in scales}

    def union(paths: list[Path]) -> tuple:
        parts = [read_ply(p) for p in paths]
        return np.concatenate([x for x, _ in parts]), np.concatenate([c for _, c in parts])

    return {"dense": union([d / f"scale{k}.ply" for k in scales]), "sparse": union(sparse)}


def geometry_quality(ctx: ReportContext, ids: list[str]) -> str:
    """Accuracy / completeness of the dense and sparse clouds against the ground-truth mesh (quality.json's
    `ground_truth.geometry`), where the reconstruct stage measured them."""
    rows = []
    taus: list[str] = []
    for bid in ids:
        q = read_json(ctx.workdir / "reconstruct" / bid / "quality.json") or {}
        geo = (q.get("ground_truth") or {}).get("geometry") or {}
        for cloud in ("dense", "sparse"):
            g = geo.get(cloud)
            if not isinstance(g, dict):
                continue
            row = {"building": bid, "cloud": cloud, "points": g.get("points")}
            for part in ("accuracy", "completeness", "completeness_facades"):
                for tau, v in (g.get(part) or {}).items():
                    row[f"{part}@{tau}"] = _pct(v)
                    taus = taus if tau in taus else taus + [tau]
            rows.append(row)
    if not rows:
        return ""
    taus = sorted(taus, key=float)
    cols = [Col("building", "building", text=True), Col("cloud", "cloud", text=True), Col("points", "points", digits=0)]
    for part, title in (("accuracy", "accuracy"), ("completeness", "completeness"), ("completeness_facades", "facades")):
        cols += [Col(f"{title} @{100 * float(t):g}%", f"{part}@{t}") for t in taus]
    html = "<h3>Geometry against the ground truth</h3>"
    html += caption("accuracy: share of the cloud's points within tau of the scene mesh; completeness: share of the "
                    "building's surface (facades: its near-vertical faces) within tau of the cloud; "
                    "tau in % of the building's size.")
    return html + table(rows, nonempty(cols, rows, keep=("building", "cloud")))


# --- renders and priors ----------------------------------------------------------------------------

def silhouette_table(ctx: ReportContext, ids: list[str]) -> str:
    """Share of each building's true silhouette its render views cover (render/<id>/quality.json), per scale."""
    rows, scales = [], set()
    for bid in ids:
        q = (read_json(ctx.workdir / "render" / bid / "quality.json") or {}).get("silhouette_coverage") or {}
        per = q.get("scales") or {}
        if not per:
            continue
        row = {"building": bid, "fill": _pct(q.get("fill_median"), 0), "in_frame": _pct(q.get("in_frame_min"), 0)}
        for k, v in per.items():
            row[f"med{k}"], row[f"min{k}"] = _pct(v.get("median"), 0), _pct(v.get("min"), 0)
            scales.add(k)
        rows.append(row)
    if not rows:
        return ""
    cols = [Col("building", "building", text=True)]
    for k in sorted(scales, key=int):
        cols += [Col(f"scale {k} median", f"med{k}"), Col(f"scale {k} min", f"min{k}")]
    cols += [Col("in frame (min)", "in_frame"), Col("frame filled (median)", "fill")]
    return ("<h3>Silhouette coverage</h3>" + caption(
        "share of the building's true silhouette (the ground-truth mesh ray-cast from each render camera, parts "
        "outside the frame included) covered by rendered points, over the views of each scale; in frame: the "
        "share of the silhouette inside the image; frame filled: the share of the image the building occupies.")
        + table(rows, cols))

def _render_unit(scale_dir: Path) -> str:
    """The unit a building's renders are in (cameras.json `unit`; renders of older versions: metres)."""
    try:
        return str(json.loads((scale_dir / "cameras.json").read_text()).get("unit") or "metre")
    except (OSError, ValueError, AttributeError):
        return "metre"


def renders(ctx: ReportContext) -> str:
    m = ctx.manifest("render")
    ok = ctx.ok_items("render")
    if not ok:
        raise Missing("the render stage has no rendered building")
    figs, units = [], set()
    for bid in ok[: ctx.cfg.render_buildings]:
        d = ctx.workdir / "render" / bid
        scale_dirs = sorted((p for p in d.glob("scale*") if p.is_dir() and p.name[5:].isdigit()), key=lambda p: int(p.name[5:]))
        rows = []
        for sd in scale_dirs:
            oblique = "view01" if (sd / "view01_color.png").exists() else "view00"
            rows.append((f"scale {sd.name[5:]}", [
                ("colour (nadir)", read_map(sd / "view00_color.png")),
                ("colour (oblique)", read_map(sd / f"{oblique}_color.png")),
                ("depth", read_map(sd / f"{oblique}_depth.npy")),
                ("height", read_map(sd / f"{oblique}_height.npy")),
                ("normals", read_map(sd / f"{oblique}_normals.png")),
                ("DSM", read_map(sd / "dsm.npy")),
            ]))
        if not rows:
            continue
        unit = _render_unit(scale_dirs[0]) if scale_dirs else "metre"
        units.add(unit)
        path = plots.plot_image_grid(rows, ctx.img(f"render_{bid}.png"),
                                     map_unit="m" if unit == "metre" else f"x {unit}")
        info = (m.get("items") or {}).get(bid, {})
        n_views = info.get("views") or (m.get("summary") or {}).get("views")
        text = f"building {bid}: rendered views and priors per scale" + (f" ({n_views} views each; one nadir, one oblique shown)" if n_views else "")
        cov = info.get("coverage")
        if isinstance(cov, dict) and cov:
            text += "; pixels covered: " + ", ".join(f"scale {k} {100 * float(v):.0f}%" for k, v in sorted(cov.items()))
        figs.append(figure(ctx.rel(path), text))
    if not figs:
        raise Missing("no scale*/ render folders found under the render dir")
    plural = {"metre": "metres", "orbit radius": "orbit radii"}
    unit = " / ".join(sorted(plural.get(u, u) for u in units)) or "metres"
    html = caption(f"Depth in {unit} from the camera, height in {unit} above the estimated ground (white: no point; "
                   "without GPS the reconstruction's unit is the drone orbit's radius), "
                   "normals as RGB = (n + 1) / 2 in the world frame, DSM from the nadir view.")
    html += grid(figs, 760)
    if len(ok) > ctx.cfg.render_buildings:
        html += caption(f"first {ctx.cfg.render_buildings} of {len(ok)} rendered buildings shown (report.render_buildings)")
    return html + silhouette_table(ctx, ok)


# --- GREM ------------------------------------------------------------------------------------------

def _find_precision_recall(d: dict) -> dict | None:
    if isinstance(d, dict):
        if "precision" in d and "recall" in d:
            return d
        for v in d.values():
            found = _find_precision_recall(v)
            if found:
                return found
    return None


def grem(ctx: ReportContext) -> str:
    m = ctx.manifest("enhance")
    files = sorted((ctx.workdir / "enhance").glob("*/grem.json"))
    results = {f.parent.name: read_json(f) or {} for f in files}
    n_google = sum(len(r.get("kept", [])) + len(r.get("dropped", [])) for r in results.values())
    n_kept = sum(len(r.get("kept", [])) for r in results.values())
    html = caption(f"{len(results)} buildings ranked their google images; {n_kept} of {n_google} kept as extra street samples.")
    q = _find_precision_recall(m.get("summary") or {})
    if q is None and results:
        root = ctx.data_root()
        truth = read_json(root / "meta" / "google_truth.json") if root else None
        if truth:
            from retrieval.grem import kept_quality

            q = kept_quality(results, truth)
    if q:
        row = {"precision": _pct(q.get("precision")), "recall": _pct(q.get("recall")),
               "base": _pct(q.get("precision_keep_all")), "kept": q.get("n_kept"), "right": q.get("n_right")}
        html += table([row], [Col("precision of the kept set", "precision"), Col("recall", "recall"),
                              Col("precision keeping all", "base"), Col("kept", "kept"), Col("right google images", "right")])
        html += caption("Against the synthetic world's truth of which building each google image shows.")
    else:
        html += note("no precision/recall: the google images carry no ground truth (meta/google_truth.json)")
    pngs = sorted((ctx.workdir / "enhance").glob("*.png"))
    if pngs:
        html += grid([figure(ctx.copy_image(p, f"enhance_{p.name}"), p.stem.replace("_", " ")) for p in pngs], 380)
    return html


# --- training --------------------------------------------------------------------------------------

def training(ctx: ReportContext) -> str:
    tdir = ctx.workdir / "train"
    if not tdir.is_dir():
        raise Missing(f"stage 'train' has not run (no {tdir})")
    series, source = {}, ""
    if find_event_files(tdir):
        series, source = read_tensorboard_scalars(tdir), "TensorBoard scalars per step"
    history = tdir / "history.json"
    if not series and history.is_file():
        series, source = read_history(history), "per-epoch history.json"
    if not series:
        raise Missing(f"no training curves: neither TensorBoard event files nor history.json under {tdir}")
    path = plots.plot_scalar_groups(series, ctx.img("training_curves.png"), x_label="step" if "TensorBoard" in source else "epoch")
    html = figure(ctx.rel(path), f"training curves ({source})")
    records = None
    if history.is_file():
        try:
            records = json.loads(history.read_text())
        except json.JSONDecodeError:
            log.warning("%s: not valid JSON; per-epoch table left out", history)
    if isinstance(records, list) and records:
        rows = [{"epoch": r.get("epoch"), "loss": r.get("loss_total"), "temperature": r.get("temperature"),
                 "val": _pct(r.get("val_r1")) if r.get("val_r1") is not None else None,
                 "ips": r.get("images_per_s"), "seconds": r.get("seconds")} for r in records if isinstance(r, dict)]
        html += "<h3>Per epoch</h3>" + table(rows, [
            Col("epoch", "epoch"), Col("loss (total)", "loss", digits=4), Col("temperature", "temperature", digits=4),
            Col("val R@1", "val"), Col("images/s", "ips", digits=1), Col("seconds", "seconds", digits=1)])
    return html


# --- evaluation ------------------------------------------------------------------------------------

def _ranks_files(ctx: ReportContext) -> dict[str, Path]:
    metrics = read_json(ctx.workdir / "evaluate" / "metrics.json") or {}
    out = {}
    for key, name in (metrics.get("files") or {}).items():
        if key.startswith("ranks ") and (ctx.workdir / "evaluate" / name).is_file():
            out[key[len("ranks "):]] = ctx.workdir / "evaluate" / name
    if not out:  # older or foreign evaluate dirs: ranks_<task>.csv
        for p in sorted((ctx.workdir / "evaluate").glob("ranks*.csv")):
            task = p.stem[len("ranks"):].lstrip("_-").replace("-", "->", 1) or STREET_TASK
            out[task] = p
    return out


def evaluation(ctx: ReportContext) -> str:
    path = ctx.workdir / "evaluate" / "metrics.json"
    metrics = read_json_file(path)
    tasks = metrics.get("tasks", {})
    rows = []
    for task, mt in tasks.items():
        if not isinstance(mt, dict):
            continue
        row = {"task": task, "q": mt.get("n_queries"), "g": mt.get("n_gallery"), "note": mt.get("note")}
        for k in ("R@1", "R@5", "R@10", "R@top1%", "AP"):
            row[k] = mt.get(k)
        ci = (mt.get("ci95") or {}).get("R@1")
        row["ci"] = f"{ci[0]:.1f}-{ci[1]:.1f}" if ci else None
        rows.append(row)
    if not rows:
        raise Missing(f"{path} holds no task metrics")
    html = table(rows, nonempty([Col("task", "task", text=True), Col("queries", "q"), Col("gallery", "g"),
                                 Col("R@1 (%)", "R@1"), Col("R@1 95% CI", "ci", text=True),
                                 *(Col(k + " (%)", k) for k in ("R@5", "R@10", "R@top1%", "AP")),
                                 Col("note", "note", text=True)], rows, keep=("task",)))
    html += caption("University-1652 protocol: every query ranked against the whole gallery, distractors included. "
                    "The interval is a bootstrap over the queries: how far R@1 could move on another draw of them.")
    figs = []
    edir = ctx.workdir / "evaluate"
    if (edir / "recall_curve.png").is_file():
        figs.append(figure(ctx.copy_image(edir / "recall_curve.png", "recall_curve.png"), "Recall@K (CMC) per task"))
    else:  # an evaluate dir from elsewhere may hold only the ranks: derive the curve from them
        from retrieval.plots import plot_recall_curve

        curves = {}
        for task, csv_path in _ranks_files(ctx).items():
            ranks = read_ranks_csv(csv_path, task)
            if ranks and any(r.first_rank is not None for r in ranks):
                curves[task] = cmc_from_ranks([r.first_rank for r in ranks], (tasks.get(task) or {}).get("n_gallery"))
        if curves:
            p = plot_recall_curve(curves, ctx.img("recall_at_k.png"), max_k=ctx.cfg.curve_max_k, title="")
            figs.append(figure(ctx.rel(p), "Recall@K (CMC) per task, from the per-query ranks"))
    if (edir / "rank_histogram.png").is_file():
        figs.append(figure(ctx.copy_image(edir / "rank_histogram.png", "rank_histogram.png"),
                           "rank of each query's first true match (from the evaluate stage)"))
    if not figs:
        html += note("no Recall@K curve: no per-query ranks CSV with first-match ranks in the evaluate dir")
    return html + (grid(figs, 440) if figs else "")


# --- ablation --------------------------------------------------------------------------------------

ABLATION_METRICS = ("R@1", "R@5", "R@10", "AP")


def ablation(ctx: ReportContext) -> str:
    path = ctx.workdir / "ablation" / "results.json"
    if not path.is_file():
        raise Missing(f"no ablation run (no {path}; run `skylink ablate`)")
    res = read_json_file(path)
    variants = res.get("variants") or {}
    if not variants:
        raise Missing(f"{path} holds no variants")

    def cell(v: dict, k: str) -> str | None:
        x = v.get(k)
        if isinstance(x, dict) and "mean" in x:
            return f"{x['mean']:.2f} ± {x.get('std', 0.0):.2f}"
        return fmt(x) if x is not None else None

    rows = [{"variant": v.get("label", name), **{k: cell(v, k) for k in ABLATION_METRICS}} for name, v in variants.items()]
    for key, label in (("pretrained", "pretrained encoder, no cross-view training (GeM)"),
                       ("baseline", "colour-histogram matcher (no learning)")):
        if isinstance(res.get(key), dict):
            rows.append({"variant": label, **{k: cell(res[key], k) for k in ABLATION_METRICS}})
    html = table(rows, nonempty([Col("variant", "variant", text=True), *(Col(k + " (%)", k) for k in ABLATION_METRICS)],
                                rows, keep=("variant",)))
    budget = res.get("train") or {}
    html += caption(f"street->satellite, mean ± std over {res.get('seeds', '?')} seed(s), same training budget"
                    + (" (" + ", ".join(f"{k} {v}" for k, v in budget.items()) + ")" if budget else "") + ".")
    return html


# --- retrieval examples ----------------------------------------------------------------------------

def _building_of(name: str) -> str | None:
    parent = Path(name).parent.name
    return parent or None


def pick_examples(ranks: list[QueryRanks], n: int) -> list[QueryRanks]:
    """About half successes (true tile first) and half failures, spread evenly over the query list."""
    hits = [r for r in ranks if r.first_rank == 1]
    misses = [r for r in ranks if r.first_rank != 1]
    n_miss = min(len(misses), n // 2)
    n_hit = min(len(hits), n - n_miss)
    n_miss = min(len(misses), n - n_hit)

    def spread(xs: list, k: int) -> list:
        if k <= 0:
            return []
        idx = np.unique(np.linspace(0, len(xs) - 1, k).round().astype(int))
        return [xs[i] for i in idx]

    return spread(hits, n_hit) + spread(misses, n_miss)


def _resolve(root: Path | None, name: str) -> Path | None:
    p = Path(name)
    if p.is_absolute():
        return p if p.is_file() else None
    if root is not None and (root / p).is_file():
        return root / p
    return None


def retrieval_examples(ctx: ReportContext) -> str:
    files = _ranks_files(ctx)
    if not files:
        raise Missing(f"no per-query ranks CSV in {ctx.workdir / 'evaluate'}")
    task = STREET_TASK if STREET_TASK in files else next(iter(files))
    ranks = read_ranks_csv(files[task], task)
    if not ranks:
        raise Missing(f"{files[task]} lists no queries")
    if not any(r.top for r in ranks):
        raise Missing(f"{files[task]} has no top-k gallery column")
    root = ctx.data_root()
    k = ctx.cfg.examples_top_k
    gallery_names = {g for r in ranks for g in r.top}
    blocks = []
    for r in pick_examples(ranks, ctx.cfg.n_examples):
        q = _resolve(root, r.query)
        qsrc = ctx.thumbnail(q) if q else None
        label = r.label or _building_of(r.query)
        where = f"true tile at rank {r.first_rank}" if r.first_rank else "no true tile in the gallery" if label else ""
        tiles = [f'<div class="tile query">{_img(qsrc, r.query)}<div>query · {esc(label or "?")}<br>{esc(where)}</div></div>'
                 '<div class="sep"></div>']
        found = False
        for i, g in enumerate(r.top[:k]):
            gb = _building_of(g)
            right = label is not None and gb == label
            found = found or right
            gp = _resolve(root, g)
            cls = "hit" if right else "miss" if label is not None else ""
            tiles.append(f'<div class="tile {cls}">{_img(ctx.thumbnail(gp) if gp else None, g)}'
                         f'<div>{i + 1}. {esc(gb or Path(g).stem)}{" ✓" if right else ""}</div></div>')
        if not found and label is not None:
            true = next((g for g in sorted(gallery_names) if _building_of(g) == label), None)
            if true is None and root is not None:
                hits = sorted((root / "test" / "gallery_satellite" / label).glob("*")) if label else []
                true = str(hits[0].relative_to(root)) if hits else None
            tp = _resolve(root, true) if true else None
            rank = f"rank {r.first_rank}" if r.first_rank else "not in the gallery"
            tiles.append('<div class="sep"></div>'
                         f'<div class="tile hit">{_img(ctx.thumbnail(tp) if tp else None, "true tile")}'
                         f'<div>true tile · {esc(rank)}</div></div>')
        blocks.append(f'<div class="example">{"".join(tiles)}</div>')
    if not blocks:
        raise Missing("no queries to show")
    html = caption(f"{task}: each street query with its top-{k} satellite tiles; green = the true building, red = wrong. "
                   "When the true tile is not among them it is shown last with its rank.")
    return html + f'<div class="examples">{"".join(blocks)}</div>'


def _img(src: str | None, alt: str) -> str:
    if src is None:
        return '<div style="width:124px;height:124px;background:#eee;line-height:124px">missing</div>'
    return f'<img src="{esc(src)}" alt="{esc(alt)}" title="{esc(alt)}">'


SECTIONS: list[tuple[str, str, Callable[[ReportContext], str]]] = [
    ("pipeline", "Pipeline", overview),
    ("dataset", "Dataset", dataset),
    ("reconstruction", "Reconstruction quality", reconstruction),
    ("renders", "Renders and geometric priors", renders),
    ("grem", "GREM: street image enhancement", grem),
    ("training", "Training", training),
    ("evaluation", "Evaluation: Recall@K", evaluation),
    ("ablation", "Ablation", ablation),
    ("examples", "Retrieval examples", retrieval_examples),
]
