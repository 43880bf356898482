"""Readers of the University-1652 layout and the UAVM2025 flat layout, and the tree validator.

Both layouts are read into one list of `ImageRecord` (building id, view, split, role, path). The
validator decodes every image and lists each problem with its path instead of stopping at the first.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from tqdm import tqdm

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
TRAIN_VIEWS = ("satellite", "drone", "street", "google")
TEST_FOLDERS = ("query_street", "query_drone", "query_satellite", "gallery_street", "gallery_drone", "gallery_satellite")
REQUIRED = {"train": ("satellite", "drone", "street"), "test": ("query_street", "gallery_satellite")}
ID_RE = re.compile(r"^\d{4}$")
UAVM_QUERY, UAVM_GALLERY, UAVM_ORDER = "workshop_query_street", "workshop_gallery_satellite", "query_street_name.txt"


@dataclass(frozen=True)
class ImageRecord:
    building: str | None    # 4-digit id; None in the name-masked UAVM2025 layout
    view: str               # satellite | drone | street | google
    split: str              # train | test
    role: str               # train | query | gallery
    path: Path

    def to_json(self, root: Path) -> dict:
        d = asdict(self)
        d["path"] = str(self.path.relative_to(root))
        return d


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DatasetError(ValueError):
    pass


def is_image_name(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS


def _folder_role(split: str, folder: str) -> tuple[str, str]:
    if split == "train":
        return folder, "train"
    role, _, view = folder.partition("_")
    return view, role


def read_tree(root: Path) -> list[ImageRecord]:
    """Every image of a University-1652 or UAVM2025 tree. Raises DatasetError for an unknown layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    if (root / UAVM_QUERY).is_dir() or (root / UAVM_GALLERY).is_dir():
        return _read_uavm(root)
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        raise DatasetError(f"{root}: neither train/ nor test/ found (not a University-1652 layout)")
    records = []
    for split, folders in (("train", TRAIN_VIEWS), ("test", TEST_FOLDERS)):
        for folder in folders:
            base = root / split / folder
            if not base.is_dir():
                continue
            view, role = _folder_role(split, folder)
            for bdir in sorted(p for p in base.iterdir() if p.is_dir()):
                for f in sorted(bdir.iterdir()):
                    if f.is_file() and is_image_name(f):
                        records.append(ImageRecord(bdir.name, view, split, role, f))
    return records


def _read_uavm(root: Path) -> list[ImageRecord]:
    records = []
    for folder, view, role in ((UAVM_QUERY, "street", "query"), (UAVM_GALLERY, "satellite", "gallery")):
        base = root / folder
        if base.is_dir():
            for f in sorted(base.rglob("*")):
                if f.is_file() and is_image_name(f):
                    records.append(ImageRecord(None, view, "test", role, f))
    return records


def select(records: Iterable[ImageRecord], **where) -> list[ImageRecord]:
    return [r for r in records if all(getattr(r, k) == v for k, v in where.items())]


def by_building(records: Iterable[ImageRecord]) -> dict[str, list[ImageRecord]]:
    out: dict[str, list[ImageRecord]] = defaultdict(list)
    for r in records:
        out[r.building].append(r)
    return dict(out)


def check_image(path: Path) -> str | None:
    """Why an image file is unusable, or None when it decodes completely."""
    try:
        size = path.stat().st_size
    except OSError as e:
        return f"cannot read ({e.strerror})"
    if size == 0:
        return "zero-byte file"
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # a full decode: truncated JPEGs fail here, not at open()
            if im.width < 2 or im.height < 2:
                return f"image too small ({im.width}x{im.height})"
    except Exception as e:  # PIL raises many types for bad data
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"not a decodable image ({msg})"
    return None


def validate_tree(root: Path, decode: bool = True, progress: bool = True) -> list[Problem]:
    """Every problem of a dataset tree, each with its path. An empty list means the tree is valid."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(root, "dataset folder not found")]
    if (root / UAVM_QUERY).is_dir() or (root / UAVM_GALLERY).is_dir():
        return _validate_uavm(root, decode, progress)
    problems: list[Problem] = []
    if not (root / "train").is_dir() and not (root / "test").is_dir():
        return [Problem(root, "neither train/ nor test/ found (not a University-1652 layout)")]
    ids: dict[str, dict[str, set[str]]] = {"train": defaultdict(set), "test": defaultdict(set)}
    files: list[Path] = []
    for split in ("train", "test"):
        sdir = root / split
        if not sdir.is_dir():
            continue
        known = TRAIN_VIEWS if split == "train" else TEST_FOLDERS
        for req in REQUIRED[split]:
            if not (sdir / req).is_dir():
                problems.append(Problem(sdir / req, "missing view folder"))
        for folder in sorted(p for p in sdir.iterdir()):
            if not folder.is_dir():
                problems.append(Problem(folder, f"unexpected file in {split}/ (expected view folders)"))
                continue
            if folder.name not in known:
                problems.append(Problem(folder, f"unknown view folder (expected one of {', '.join(known)})"))
                continue
            for bdir in sorted(folder.iterdir()):
                if not bdir.is_dir():
                    problems.append(Problem(bdir, "file outside a building folder (expected <id>/ folders)"))
                    continue
                if not ID_RE.match(bdir.name):
                    problems.append(Problem(bdir, "building id is not a 4-digit folder name"))
                    continue
                images = []
                for f in sorted(bdir.iterdir()):
                    if f.is_dir():
                        problems.append(Problem(f, "unexpected folder inside a building folder"))
                    elif not is_image_name(f):
                        problems.append(Problem(f, "not an image file (unknown extension)"))
                    else:
                        images.append(f)
                files.extend(images)
                if images:
                    ids[split][folder.name].add(bdir.name)
                elif folder.name in ("satellite", "gallery_satellite"):
                    problems.append(Problem(bdir, "satellite folder is empty (one tile per building expected)"))
                elif folder.name == "google":
                    pass  # empty google folders are normal in University-1652
                else:
                    problems.append(Problem(bdir, "empty building folder"))
    tr = ids["train"]
    for view in ("drone", "street", "google"):
        for b in sorted(tr[view] - tr["satellite"]):
            problems.append(Problem(root / "train" / "satellite" / b, f"missing satellite image for building with {view} images"))
    te = ids["test"]
    for b in sorted((te["query_street"] | te["query_drone"]) - te["gallery_satellite"]):
        problems.append(Problem(root / "test" / "query_street" / b, "query id missing from gallery_satellite"))
    for b in sorted(te["query_satellite"] - te["gallery_drone"]):
        problems.append(Problem(root / "test" / "query_satellite" / b, "query id missing from gallery_drone"))
    train_ids = set().union(*tr.values()) if tr else set()
    test_ids = set().union(*te.values()) if te else set()
    for b in sorted(train_ids & test_ids):
        problems.append(Problem(root / "test" / "gallery_satellite" / b, "duplicated id: building appears in both train and test"))
    if decode:
        problems.extend(_decode_all(files, progress))
    return sorted(problems, key=lambda p: str(p.path))


def _validate_uavm(root: Path, decode: bool, progress: bool) -> list[Problem]:
    problems = []
    for folder in (UAVM_QUERY, UAVM_GALLERY):
        if not (root / folder).is_dir():
            problems.append(Problem(root / folder, "missing folder of the UAVM2025 layout"))
    files = [r.path for r in _read_uavm(root)]
    order = root / UAVM_ORDER
    if (root / UAVM_QUERY).is_dir():
        names = {p.name for p in (root / UAVM_QUERY).rglob("*") if p.is_file() and is_image_name(p)}
        if not order.is_file():
            problems.append(Problem(order, "missing query order file"))
        else:
            listed = [line.strip() for line in order.read_text().splitlines() if line.strip()]
            for n in sorted(set(listed) - names):
                problems.append(Problem(order, f"lists {n}, which is not in {UAVM_QUERY}/"))
            for n in sorted(names - set(listed)):
                problems.append(Problem(root / UAVM_QUERY / n, f"query image not listed in {UAVM_ORDER}"))
    if decode:
        problems.extend(_decode_all(files, progress))
    return sorted(problems, key=lambda p: str(p.path))


def _decode_all(files: list[Path], progress: bool) -> list[Problem]:
    out = []
    for f in tqdm(files, desc="decode", unit="img", disable=not progress or len(files) < 200, dynamic_ncols=True):
        why = check_image(f)
        if why:
            out.append(Problem(f, why))
    return out


def summary_table(records: list[ImageRecord]) -> list[dict]:
    """Buildings and images per (split, role, view), for the validator's table and the report."""
    imgs = Counter((r.split, r.role, r.view) for r in records)
    blds: dict[tuple, set] = defaultdict(set)
    for r in records:
        blds[(r.split, r.role, r.view)].add(r.building)
    rows = []
    for key in sorted(imgs):
        split, role, view = key
        folder = view if split == "train" else f"{role}_{view}"
        rows.append({"split": split, "folder": folder, "buildings": len(blds[key] - {None}), "images": imgs[key]})
    return rows


def format_table(rows: list[dict]) -> str:
    if not rows:
        return "(no images)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    line = "  ".join(c.ljust(widths[c]) for c in cols)
    sep = "  ".join("-" * widths[c] for c in cols)
    body = ["  ".join(str(r[c]).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join([line, sep, *body])
