"""The UAVM2025 challenge submission: `answer.zip` holding `answer.txt`, and the challenge's flat data layout.

`answer.txt` has one line per query, in the order of `query_street_name.txt`, each with the ten best
gallery file names without their extension, separated by tabs (the official example's format).
"""
from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

log = logging.getLogger("skylink")

TOP_K = 10
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
QUERY_DIR = "workshop_query_street"
GALLERY_DIR = "workshop_gallery_satellite"
QUERY_ORDER = "query_street_name.txt"


class SubmissionError(ValueError):
    pass


def _stem(name: str) -> str:
    return Path(name).stem


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_query_order(path: Path) -> list[str]:
    """The query file names of `query_street_name.txt`, in order (blank lines and surrounding space ignored)."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: query order file not found")
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise SubmissionError(f"{path}: the query order file is empty")
    dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
    if dup:
        raise SubmissionError(f"{path}: query names listed more than once: {', '.join(dup[:5])}")
    return names


def _rel_images(folder: Path) -> list[str]:
    """Posix paths relative to `folder` of every image below it (flat: file names; University-1652: `<id>/<file>`)."""
    return sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _drop_suffix(rel: str) -> str:
    return rel[: -len(Path(rel).suffix)] if Path(rel).suffix else rel


def check_query_folder(query_names: Sequence[str], query_folder: Path) -> None:
    """Refuse a query list that does not name exactly the images of the query folder.

    Names are file paths relative to the folder (plain file names in the flat UAVM2025 layout); a name
    may leave out the extension.
    """
    query_folder = Path(query_folder)
    if not query_folder.is_dir():
        raise SubmissionError(f"{query_folder}: query folder not found")
    rels = _rel_images(query_folder)
    known = set(rels) | {_drop_suffix(r) for r in rels}
    missing = [n for n in query_names if n not in known]
    listed = {_drop_suffix(n) for n in query_names}
    extra = sorted(r for r in rels if _drop_suffix(r) not in listed)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} listed queries are not in the folder (e.g. {missing[0]})")
        if extra:
            parts.append(f"{len(extra)} images of the folder are not listed (e.g. {extra[0]})")
        raise SubmissionError(f"{query_folder}: the query list does not match the query folder: {'; '.join(parts)}")


def format_answer(
    query_names: Sequence[str],
    ranked_gallery_names: Sequence[Sequence[str]],
    *,
    gallery_names: Sequence[str] | None = None,
    k: int = TOP_K,
) -> str:
    """The text of `answer.txt`; raises SubmissionError with the reason when it cannot be valid."""
    if len(query_names) != len(ranked_gallery_names):
        raise SubmissionError(f"answer: {len(query_names)} queries but {len(ranked_gallery_names)} ranked lists")
    if gallery_names is not None and len(gallery_names) < k:
        raise SubmissionError(f"answer: the gallery has {len(gallery_names)} images, fewer than the {k} names each line needs")
    allowed = {_stem(g) for g in gallery_names} if gallery_names is not None else None
    lines = []
    for q, ranked in zip(query_names, ranked_gallery_names):
        row = [_stem(str(g)) for g in ranked[:k]]
        if len(row) < k:
            raise SubmissionError(f"answer: query {q} has {len(row)} ranked gallery images, fewer than {k} (is the gallery smaller than {k}?)")
        if len(set(row)) != k:
            raise SubmissionError(f"answer: query {q} lists a gallery image twice in its top {k}")
        if allowed is not None and not set(row) <= allowed:
            bad = next(g for g in row if g not in allowed)
            raise SubmissionError(f"answer: query {q} ranks {bad!r}, which is not in the gallery")
        if any("\t" in g or "\n" in g for g in row):
            raise SubmissionError(f"answer: query {q} has a gallery name with a tab or newline")
        lines.append("\t".join(row))
    return "\n".join(lines) + "\n"


def export_answer(
    query_names: Sequence[str],
    ranked_gallery_names: Sequence[Sequence[str]],
    out_zip: Path,
    *,
    query_folder: Path | None = None,
    gallery_names: Sequence[str] | None = None,
    k: int = TOP_K,
) -> Path:
    """Write `answer.zip` (holding `answer.txt`) and return its path.

    `query_names` is the order of `query_street_name.txt`; `ranked_gallery_names[i]` the gallery file
    names ranked for query i, best first. With `query_folder` the query list must name exactly the
    folder's images; with `gallery_names` the gallery must hold at least `k` images and every ranked
    name must be one of them.
    """
    if query_folder is not None:
        check_query_folder(query_names, query_folder)
    text = format_answer(query_names, ranked_gallery_names, gallery_names=gallery_names, k=k)
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_zip.with_name(f".{out_zip.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("answer.txt", text)
    tmp.replace(out_zip)
    log.info("wrote %s (%d queries)", out_zip, len(query_names))
    return out_zip


def read_answer(path: Path) -> list[list[str]]:
    """The rows of an `answer.txt` or of the `answer.txt` inside an `answer.zip`."""
    path = Path(path)
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            if "answer.txt" not in zf.namelist():
                raise SubmissionError(f"{path}: the archive holds no answer.txt at its root")
            text = zf.read("answer.txt").decode()
    else:
        text = path.read_text()
    return [line.split("\t") for line in text.splitlines() if line]


@dataclass
class FlatLayout:
    """A UAVM2025 name-masked test set: queries in the order of the challenge, the gallery sorted."""

    root: Path
    query_paths: list[Path]         # ordered as query_street_name.txt
    gallery_paths: list[Path]
    query_order_file: Path | None   # None when the order was generated from the folder


def find_flat_layout(root: Path) -> Path | None:
    """The folder holding `workshop_query_street/` and `workshop_gallery_satellite/` (ROOT or ROOT/test), if any."""
    for cand in (Path(root), Path(root) / "test"):
        if (cand / QUERY_DIR).is_dir() and (cand / GALLERY_DIR).is_dir():
            return cand
    return None


def read_flat_layout(root: Path, query_order: Path | None = None) -> FlatLayout:
    """Read the UAVM2025 flat layout under `root` (or `root/test`) and check the query order against the folder.

    The order comes from `query_order`, else `query_street_name.txt` beside the folders (or in
    `root`), else the sorted file names of the query folder.
    """
    base = find_flat_layout(root)
    if base is None:
        raise SubmissionError(f"{root}: no {QUERY_DIR}/ and {GALLERY_DIR}/ folders here or in test/")
    qdir, gdir = base / QUERY_DIR, base / GALLERY_DIR
    order_file = query_order
    if order_file is None:
        order_file = next((p for p in (base / QUERY_ORDER, Path(root) / QUERY_ORDER) if p.is_file()), None)
    images = {p.name: p for p in list_images(qdir)}
    if not images:
        raise SubmissionError(f"{qdir}: the query folder holds no images")
    if order_file is not None:
        names = read_query_order(order_file)
        check_query_folder(names, qdir)
        by_stem = {p.stem: p for p in images.values()}
        query_paths = [images.get(n) or by_stem[n] for n in names]
    else:
        query_paths = list(images.values())
    gallery = list_images(gdir)
    if not gallery:
        raise SubmissionError(f"{gdir}: the gallery folder holds no images")
    return FlatLayout(root=base, query_paths=query_paths, gallery_paths=gallery, query_order_file=order_file)


def generate_query_order(names: Sequence[str], out: Path) -> Path:
    """Write a `query_street_name.txt` (one query name per line) for a tree that has none."""
    out = Path(out)
    if len(set(names)) != len(names):
        raise SubmissionError(f"{out}: query names are not unique, so they cannot identify the queries")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(names) + "\n")
    return out


def export_from_evaluation(evaluate_dir: Path, out: Path, workdir: Path | None = None) -> Path:
    """Re-check the answer of an `evaluate` stage dir and write it as `out` (a .zip path, or a folder for answer.zip).

    Refuses with the evaluation's reason when it could not write an answer (e.g. a gallery under ten
    images), and when `answer.txt` does not have one line of ten names per query of the order file.
    The recorded order file is read against `workdir` (default: `evaluate_dir`'s parent).
    """
    import json

    from retrieval.paths import recorded_path

    evaluate_dir, out = Path(evaluate_dir), Path(out)
    workdir = Path(workdir) if workdir is not None else evaluate_dir.parent
    metrics_file = evaluate_dir / "metrics.json"
    if not metrics_file.is_file():
        raise SubmissionError(f"{metrics_file}: not found (run the evaluate stage first)")
    info = json.loads(metrics_file.read_text()).get("answer") or {}
    if not info.get("written"):
        raise SubmissionError(f"{evaluate_dir}: the evaluation wrote no answer: {info.get('reason', 'answer disabled (evaluate.answer)')}")
    rows = read_answer(evaluate_dir / "answer.txt")
    names = read_query_order(recorded_path(info["query_order"], workdir))
    if len(rows) != len(names):
        raise SubmissionError(f"{evaluate_dir / 'answer.txt'}: {len(rows)} lines but {len(names)} queries in {info['query_order']}")
    if out.suffix.lower() != ".zip":
        out = out / "answer.zip"
    return export_answer(names, rows, out)
