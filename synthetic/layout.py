"""Procedural campus layout: blocks and roads, building footprints and styles, trees, cars, ground map.

Everything here is 2D/parametric; `synthetic.geometry` turns it into a triangle mesh. The frame is
local east-north-up metres with z = 0 on the ground.
"""
from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Point, Polygon, box

from . import style
from .config import SynthConfig

ROAD_WIDTH = 12.0       # two lanes and two parking lanes
PAVEMENT = 3.0          # inside the block edge
VERGE = 3.0             # grass strip with trees behind the pavement
SETBACK = 11.0          # building distance from the block edge
GROUND_RES = 0.25       # metres per ground-map texel


def rng_for(seed: int, *keys: int | str) -> np.random.Generator:
    """An independent generator per (seed, keys), so the bytes of one image do not depend on
    which other images were rendered before it (order-free, parallel-safe determinism)."""
    ints = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) % 2 ** 32 for k in keys]
    return np.random.default_rng([int(seed), *ints])


@dataclass
class Building:
    index: int
    id: str
    footprint: Polygon          # world frame, exterior CCW
    angle: float                # radians, orientation of the building's local x axis
    height: float               # wall (eave) height, metres
    roof: str                   # flat | gable | hip
    roof_height: float          # extra ridge height of pitched roofs
    facade_style: int           # index into style.FACADE_STYLES
    facade_colour: tuple[float, float, float]
    floor_height: float
    bay: float
    window_width: float         # metres
    window_height: float        # metres
    roof_colour: tuple[float, float, float]
    roof_units: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # x, y, w, d, h
    split: str = "train"        # train | test
    role: str = "query"         # query | distractor
    block: tuple[float, float, float, float] | None = None

    @property
    def top(self) -> float:
        return self.height + self.roof_height

    @property
    def center(self) -> np.ndarray:
        c = self.footprint.centroid
        return np.array([c.x, c.y, 0.5 * self.top])

    @property
    def radius(self) -> float:
        """Horizontal distance from the centre to the furthest footprint vertex."""
        c = self.footprint.centroid
        xy = np.asarray(self.footprint.exterior.coords)
        return float(np.max(np.hypot(xy[:, 0] - c.x, xy[:, 1] - c.y)))

    def orbit_radius(self, cfg: SynthConfig) -> float:
        """Nominal horizontal radius of the drone spiral: the building fills about 60% of the
        middle group's view."""
        size = max(self.radius, 0.6 * self.top, 12.0)
        half = math.radians(cfg.drone_fov_deg) / 2
        dist = size / math.tan(0.62 * half)
        elev = math.radians(0.5 * sum(cfg.drone_elevation_deg))
        return float(dist * math.cos(elev))


@dataclass
class Tree:
    x: float
    y: float
    trunk_height: float
    crown_radius: float
    crown_height: float         # vertical semi-axis
    green: int

    @property
    def crown_center_z(self) -> float:
        return self.trunk_height + 0.8 * self.crown_height


@dataclass
class Car:
    x: float
    y: float
    angle: float
    colour: int


@dataclass
class Layout:
    buildings: list[Building]
    trees: list[Tree]
    cars: list[Car]
    ground_classes: np.ndarray      # (H, W) uint8 ground classes, row = north index
    ground_colours: np.ndarray      # (H, W, 3) uint8 albedo
    ground_origin: tuple[float, float]  # world (x, y) of texel (0, 0)'s corner
    extent: tuple[float, float, float, float]  # region bounds x0, y0, x1, y1
    walk_lines: list[np.ndarray]    # polylines (N, 2) along pavements where street cameras stand


# ---------------------------------------------------------------------------- footprints

def _shape(rng: np.random.Generator, kind: str, w: float, d: float) -> Polygon:
    """A footprint of the given kind centred at the origin, axis-aligned."""
    outer = box(-w / 2, -d / 2, w / 2, d / 2)
    if kind == "L":
        a, b = rng.uniform(0.35, 0.6) * w, rng.uniform(0.35, 0.6) * d
        return outer.difference(box(w / 2 - a, d / 2 - b, w / 2 + 1, d / 2 + 1))
    if kind == "U":
        a, b = rng.uniform(0.3, 0.45) * w, rng.uniform(0.4, 0.65) * d
        return outer.difference(box(-a / 2, d / 2 - b, a / 2, d / 2 + 1))
    if kind == "courtyard":
        t = rng.uniform(0.22, 0.3)
        return outer.difference(box(-w / 2 + t * w, -d / 2 + t * d, w / 2 - t * w, d / 2 - t * d))
    return outer


def _orient(poly: Polygon) -> Polygon:
    poly = shapely.geometry.polygon.orient(poly, sign=1.0)
    return shapely.set_precision(poly, 1e-3)


def read_footprints(path: str | Path) -> list[Polygon]:
    """Polygons (metres, local ENU) from a GeoJSON FeatureCollection, Feature or geometry."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read GeoJSON footprints ({e})") from e
    feats = data.get("features", [data]) if isinstance(data, dict) else None
    if not feats:
        raise ValueError(f"{path}: no features; expected a GeoJSON FeatureCollection of Polygons")
    polys: list[Polygon] = []
    for i, f in enumerate(feats):
        geom = f.get("geometry", f) if isinstance(f, dict) else None
        try:
            g = shapely.geometry.shape(geom)
        except Exception as e:  # noqa: BLE001 - shapely raises several types
            raise ValueError(f"{path}: feature {i} has no valid geometry ({e})") from e
        if isinstance(g, MultiPolygon):
            g = max(g.geoms, key=lambda p: p.area)
        if not isinstance(g, Polygon) or g.is_empty or not g.is_valid or g.area < 20:
            raise ValueError(f"{path}: feature {i} is not a valid polygon of at least 20 m^2")
        polys.append(_orient(g))
    return polys


# ---------------------------------------------------------------------------- layout

def _draw(img: np.ndarray, geom, value, origin: tuple[float, float]) -> None:
    """Fill a shapely (multi)polygon into a ground raster, holes respected."""
    if geom.is_empty:
        return
    geoms = getattr(geom, "geoms", [geom])
    for g in geoms:
        if not isinstance(g, Polygon):
            continue
        rings = [np.asarray(g.exterior.coords)] + [np.asarray(r.coords) for r in g.interiors]
        # texel centres sit at integer coordinates in cv2 (as in the renderer's lookup)
        pts = [np.round(((r - origin) / GROUND_RES - 0.5) * 16).astype(np.int32) for r in rings]
        cv2.fillPoly(img, pts, value, lineType=cv2.LINE_8, shift=4)


def _building_params(cfg: SynthConfig, rng: np.random.Generator, facade_palette: list[int],
                     roof_palette: list[int]) -> dict:
    fs = int(facade_palette[rng.integers(len(facade_palette))])
    st = style.FACADE_STYLES[fs]
    jitter = rng.uniform(-0.04, 0.04, 3)
    colour = tuple(float(np.clip(c + j, 0, 1)) for c, j in zip(st.colour, jitter))
    floor_h = rng.uniform(*st.floor_height)
    bay = rng.uniform(*st.bay)
    roof = style.ROOF_COLOURS[int(roof_palette[rng.integers(len(roof_palette))])]
    return dict(facade_style=fs, facade_colour=colour, floor_height=float(floor_h), bay=float(bay),
                window_width=float(bay * rng.uniform(*st.window_width)),
                window_height=float(floor_h * rng.uniform(*st.window_height)), roof_colour=roof)


def _roof_units(rng: np.random.Generator, poly: Polygon, angle: float) -> list:
    units = []
    for _ in range(int(rng.integers(1, 4))):
        for _try in range(10):
            minx, miny, maxx, maxy = poly.bounds
            x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
            w, d, h = rng.uniform(2, 5), rng.uniform(2, 4), rng.uniform(1.2, 2.5)
            fp = affinity.rotate(box(x - w / 2, y - d / 2, x + w / 2, y + d / 2), angle, use_radians=True)
            if poly.buffer(-1.0).contains(fp) and all(
                    Point(x, y).distance(Point(u[0], u[1])) > 5 for u in units):
                units.append((float(x), float(y), float(w), float(d), float(h)))
                break
    return units


def make_layout(cfg: SynthConfig) -> Layout:
    n = cfg.n_train + cfg.n_test + cfg.n_distractors
    if n < 1:
        raise ValueError("synth: n_train + n_test + n_distractors must be at least 1")
    rng = rng_for(cfg.seed, "layout")
    facade_palette = list(rng.choice(len(style.FACADE_STYLES), size=min(cfg.facade_styles, len(style.FACADE_STYLES)),
                                     replace=False))
    roof_palette = list(rng.choice(len(style.ROOF_COLOURS), size=min(cfg.roof_colours, len(style.ROOF_COLOURS)),
                                   replace=False))
    given = read_footprints(cfg.footprints) if cfg.footprints else None
    if given is not None and len(given) < n:
        raise ValueError(f"{cfg.footprints}: {len(given)} footprints, but the config asks for {n} buildings")

    if given is None:
        blocks, cells_used = _grid_blocks(rng, n)
    else:
        blocks, cells_used = [], []

    buildings: list[Building] = []
    for i in range(n):
        brng = rng_for(cfg.seed, "building", i)
        p = _building_params(cfg, brng, facade_palette, roof_palette)
        tower = brng.random() < cfg.tower_share
        floors = int(brng.integers(12, 23)) if tower else int(brng.integers(cfg.floors[0], cfg.floors[1] + 1))
        height = floors * p["floor_height"] + 0.6
        if given is not None:
            poly = given[i]
            angle = _main_axis(poly)
            block = None
            kind = "given"
        else:
            block = blocks[cells_used[i]]
            bx0, by0, bx1, by1 = block
            avail_w, avail_d = bx1 - bx0 - 2 * SETBACK, by1 - by0 - 2 * SETBACK
            for _try in range(50):
                if tower:
                    kind = "rect" if brng.random() < 0.7 else "courtyard"
                    w, d = brng.uniform(16, 26), brng.uniform(16, 26)
                    if kind == "courtyard":
                        w, d = w + 12, d + 12
                else:
                    kind = str(brng.choice(["rect", "L", "U", "courtyard"], p=[0.35, 0.25, 0.2, 0.2]))
                    lo = 30.0 if kind == "courtyard" else 16.0
                    w, d = brng.uniform(lo, max(lo, avail_w)), brng.uniform(lo - 2, max(lo - 2, avail_d))
                angle = 0.0 if brng.random() < 0.5 else math.radians(brng.uniform(-30, 30))
                angle += float(brng.integers(4)) * math.pi / 2
                poly = affinity.rotate(_shape(brng, kind, w, d), angle, origin=(0, 0), use_radians=True)
                minx, miny, maxx, maxy = poly.bounds
                slack_x = avail_w - (maxx - minx)
                slack_y = avail_d - (maxy - miny)
                if slack_x >= 0 and slack_y >= 0:
                    break
            else:  # shrink until it fits
                s = min(avail_w / (maxx - minx), avail_d / (maxy - miny))
                poly = affinity.scale(poly, s, s, origin=(0, 0))
                minx, miny, maxx, maxy = poly.bounds
                slack_x = slack_y = 0.0
            cx = bx0 + SETBACK + brng.uniform(0, max(slack_x, 0)) - minx
            cy = by0 + SETBACK + brng.uniform(0, max(slack_y, 0)) - miny
            poly = affinity.translate(poly, cx, cy)
        poly = _orient(poly)
        roof, roof_h = "flat", 0.0
        if kind == "rect" and floors <= 6 and brng.random() < 0.6:
            roof = "gable" if brng.random() < 0.5 else "hip"
            minx, miny, maxx, maxy = affinity.rotate(poly, -angle, origin=poly.centroid, use_radians=True).bounds
            roof_h = float(min(0.5 * min(maxx - minx, maxy - miny) * brng.uniform(0.5, 0.9), 9.0))
            height -= 0.6  # no parapet on pitched roofs
        units = _roof_units(brng, poly, angle) if roof == "flat" else []
        buildings.append(Building(index=i, id="", footprint=poly, angle=float(angle), height=float(height),
                                  roof=roof, roof_height=roof_h, roof_units=units, block=block, **p))

    _assign_splits(cfg, rng, buildings)
    if given is None:
        spare = [b for j, b in enumerate(blocks) if j not in set(cells_used[:n])]
        return _furnish_grid(cfg, rng, buildings, blocks, spare)
    return _furnish_free(cfg, rng, buildings)


def _main_axis(poly: Polygon) -> float:
    rect = poly.minimum_rotated_rectangle
    xy = np.asarray(rect.exterior.coords)
    e = xy[1] - xy[0]
    return float(math.atan2(e[1], e[0]))


def _assign_splits(cfg: SynthConfig, rng: np.random.Generator, buildings: list[Building]) -> None:
    """Random ids (4 digits, as University-1652) and splits interleaved across the campus."""
    n = len(buildings)
    ids = rng.choice(np.arange(1, 10000), size=n, replace=False)
    order = rng.permutation(n)
    for rank, i in enumerate(order):
        b = buildings[i]
        b.id = f"{int(ids[rank]):04d}"
        if rank < cfg.n_train:
            b.split, b.role = "train", "query"
        elif rank < cfg.n_train + cfg.n_test:
            b.split, b.role = "test", "query"
        else:
            b.split, b.role = "test", "distractor"


def _grid_blocks(rng: np.random.Generator, n: int) -> tuple[list[tuple], list[int]]:
    cols = max(1, math.ceil(math.sqrt(n * 1.2)))
    rows = max(1, math.ceil(n / cols))
    if rows * cols == n and n > 2:
        rows += 1  # at least one spare block for a park or parking lot
    widths = rng.uniform(72, 96, cols)
    heights = rng.uniform(68, 92, rows)
    xs = np.concatenate([[0], np.cumsum(widths + ROAD_WIDTH)])
    ys = np.concatenate([[0], np.cumsum(heights + ROAD_WIDTH)])
    ox, oy = -xs[-1] / 2, -ys[-1] / 2
    blocks = []
    for r in range(rows):
        for c in range(cols):
            x0, y0 = ox + xs[c] + ROAD_WIDTH / 2, oy + ys[r] + ROAD_WIDTH / 2
            blocks.append((float(x0), float(y0), float(x0 + widths[c]), float(y0 + heights[r])))
    cells = list(rng.permutation(len(blocks)))
    return blocks, [int(c) for c in cells]


def _ground_canvas(extent: tuple[float, float, float, float]):
    x0, y0, x1, y1 = extent
    margin = 80.0
    origin = (x0 - margin, y0 - margin)
    w = int(math.ceil((x1 - x0 + 2 * margin) / GROUND_RES))
    h = int(math.ceil((y1 - y0 + 2 * margin) / GROUND_RES))
    classes = np.full((h, w), style.FIELD, np.uint8)
    return classes, origin


def _colours_from_classes(classes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lut = np.zeros((256, 3), np.float32)
    for k, c in style.GROUND_COLOURS.items():
        lut[k] = c
    col = lut[classes]
    # large-scale variation (worn grass, patched asphalt) baked into the map
    h, w = classes.shape
    small = rng.normal(0, 1, (h // 64 + 2, w // 64 + 2)).astype(np.float32)
    var = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)[..., None]
    col *= 1 + 0.07 * np.clip(var, -2.5, 2.5)
    return np.clip(col * 255 + 0.5, 0, 255).astype(np.uint8)


def _place_trees_line(rng, line: np.ndarray, spacing: tuple[float, float], trees: list[Tree],
                      forbid) -> None:
    seg = np.diff(line, axis=0)
    lens = np.hypot(seg[:, 0], seg[:, 1])
    total = float(lens.sum())
    s = rng.uniform(0, spacing[1])
    cum = np.concatenate([[0], np.cumsum(lens)])
    while s < total:
        k = int(np.searchsorted(cum, s, side="right") - 1)
        k = min(k, len(seg) - 1)
        p = line[k] + seg[k] * (s - cum[k]) / max(lens[k], 1e-9)
        if not forbid.contains(Point(p)):
            trees.append(_tree(rng, float(p[0]), float(p[1])))
        s += rng.uniform(*spacing)


def _tree(rng: np.random.Generator, x: float, y: float) -> Tree:
    r = rng.uniform(2.0, 4.5)
    rz = r * rng.uniform(0.8, 1.25)
    trunk = 2.9 + 0.2 * rz + rng.uniform(0, 1.5)
    return Tree(x, y, float(trunk), float(r), float(rz), int(rng.integers(len(style.TREE_GREENS))))


def _furnish_grid(cfg: SynthConfig, rng: np.random.Generator, buildings: list[Building],
                  blocks: list[tuple], spare: list[tuple]) -> Layout:
    bx = np.array(blocks)
    extent = (float(bx[:, 0].min() - ROAD_WIDTH / 2), float(bx[:, 1].min() - ROAD_WIDTH / 2),
              float(bx[:, 2].max() + ROAD_WIDTH / 2), float(bx[:, 3].max() + ROAD_WIDTH / 2))
    classes, origin = _ground_canvas(extent)
    _draw(classes, box(*extent), style.ROAD, origin)
    trees: list[Tree] = []
    cars: list[Car] = []
    walk: list[np.ndarray] = []
    building_zone = shapely.union_all([b.footprint.buffer(4.0) for b in buildings])
    for bi, blk in enumerate(blocks):
        x0, y0, x1, y1 = blk
        outer = box(*blk)
        _draw(classes, outer, style.PAVEMENT, origin)
        _draw(classes, outer.buffer(-PAVEMENT, join_style=2), style.GRASS, origin)
        ring = np.asarray(outer.buffer(-PAVEMENT / 2, join_style=2).exterior.coords)
        walk.append(ring)
        verge = np.asarray(outer.buffer(-PAVEMENT - VERGE / 2, join_style=2).exterior.coords)
        trng = rng_for(cfg.seed, "block-trees", bi)
        _place_trees_line(trng, verge, (7.0, 16.0), trees, building_zone)
    # parked cars along the kerbs, both sides of every road
    crng = rng_for(cfg.seed, "kerb-cars")
    n_kerb = cfg.cars_per_building * len(buildings) // 2
    for _ in range(n_kerb):
        blk = blocks[int(crng.integers(len(blocks)))]
        x0, y0, x1, y1 = blk
        side = int(crng.integers(4))
        off = 1.2  # centre of the parking lane, 1.2 m outside the block edge
        if side in (0, 1):
            x = float(crng.uniform(x0 + 4, x1 - 4))
            y = y0 - off if side == 0 else y1 + off
            ang = 0.0
        else:
            y = float(crng.uniform(y0 + 4, y1 - 4))
            x = x0 - off if side == 2 else x1 + off
            ang = math.pi / 2
        if all(math.hypot(c.x - x, c.y - y) > 5.5 for c in cars):
            cars.append(Car(x, y, ang + math.pi * int(crng.integers(2)), int(crng.integers(len(style.CAR_COLOURS)))))
    # road markings: dashed centre lines
    for blk in blocks:
        x0, y0, x1, y1 = blk
        for yy in (y0 - ROAD_WIDTH / 2, y1 + ROAD_WIDTH / 2):
            for xx in np.arange(x0, x1, 6.0):
                _draw(classes, box(xx, yy - 0.08, xx + 3.0, yy + 0.08), style.MARKING, origin)
        for xx in (x0 - ROAD_WIDTH / 2, x1 + ROAD_WIDTH / 2):
            for yy in np.arange(y0, y1, 6.0):
                _draw(classes, box(xx - 0.08, yy, xx + 0.08, yy + 3.0), style.MARKING, origin)
    # around each building: a paved apron, a path to the nearest pavement, trees on the lawn
    for b in buildings:
        brng = rng_for(cfg.seed, "furnish", b.index)
        _draw(classes, b.footprint.buffer(2.5, join_style=2), style.PLAZA, origin)
        x0, y0, x1, y1 = b.block
        c = b.footprint.centroid
        d = [c.x - x0, x1 - c.x, c.y - y0, y1 - c.y]
        k = int(np.argmin(d))
        wpath = brng.uniform(3, 6)
        if k < 2:
            xe = x0 if k == 0 else x1
            path = box(min(xe, c.x), c.y - wpath / 2, max(xe, c.x), c.y + wpath / 2)
        else:
            ye = y0 if k == 2 else y1
            path = box(c.x - wpath / 2, min(ye, c.y), c.x + wpath / 2, max(ye, c.y))
        _draw(classes, path.difference(b.footprint), style.PLAZA, origin)
        lawn = box(*b.block).buffer(-PAVEMENT - VERGE - 2, join_style=2).difference(
            b.footprint.buffer(6)).difference(path.buffer(2))
        if brng.random() < 0.5:
            lot = _parking_lot(brng, classes, origin, lawn, cars)
            if lot is not None:
                lawn = lawn.difference(lot.buffer(1.0))
        _scatter_trees(brng, lawn, cfg.trees_per_building // 2, trees)
    for si, blk in enumerate(spare):
        srng = rng_for(cfg.seed, "spare", si)
        inner = box(*blk).buffer(-PAVEMENT - VERGE, join_style=2)
        kind = srng.random()
        if kind < 0.45:  # park: paths and many trees
            diag = shapely.geometry.LineString([inner.bounds[:2], inner.bounds[2:]]).buffer(2.0)
            _draw(classes, diag.intersection(inner), style.GRAVEL, origin)
            _scatter_trees(srng, inner.difference(diag.buffer(2)), 3 * cfg.trees_per_building // 2, trees)
        elif kind < 0.75:  # parking
            _parking_lot(srng, classes, origin, inner, cars, big=True)
        else:  # sports field
            f = inner.buffer(-6, join_style=2)
            _draw(classes, f, style.GRAVEL, origin)
            _draw(classes, f.buffer(-3, join_style=2), style.GRASS, origin)
            fx0, fy0, fx1, fy1 = f.buffer(-5, join_style=2).bounds
            for g in (box(fx0, fy0, fx1, fy1).exterior.buffer(0.12),
                      shapely.geometry.LineString([((fx0 + fx1) / 2, fy0), ((fx0 + fx1) / 2, fy1)]).buffer(0.12),
                      Point((fx0 + fx1) / 2, (fy0 + fy1) / 2).buffer(6).exterior.buffer(0.12)):
                _draw(classes, g, style.MARKING, origin)
    # trees in the fields around the campus
    frng = rng_for(cfg.seed, "field-trees")
    ring = box(*extent).buffer(45).difference(box(*extent).buffer(4))
    _scatter_trees(frng, ring, 3 * len(buildings), trees)
    cols = _colours_from_classes(classes, rng_for(cfg.seed, "ground"))
    return Layout(buildings, trees, cars, classes, cols, origin, extent, walk)


def _parking_lot(rng, classes, origin, area, cars: list[Car], big: bool = False) -> Polygon | None:
    """A parking lot with marked stalls, placed inside `area`, partly filled with cars."""
    minx, miny, maxx, maxy = area.bounds
    for _try in range(30):
        w = rng.uniform(24, 40) if not big else maxx - minx - 4
        d = 17.0 if not big else min(maxy - miny - 4, 34.0)
        x = rng.uniform(minx, max(minx, maxx - w))
        y = rng.uniform(miny, max(miny, maxy - d))
        lot = box(x, y, x + w, y + d)
        if area.contains(lot) or big:
            break
    else:
        return None
    _draw(classes, lot, style.PARKING, origin)
    rows = [y + 2.5, y + d - 2.5] if d < 30 else [y + 2.5, y + d / 2 - 2.5, y + d / 2 + 2.5, y + d - 2.5]
    for ry in rows:
        for sx in np.arange(x + 1.0, x + w - 2.5, 2.6):
            _draw(classes, box(sx, ry - 2.5, sx + 0.12, ry + 2.5), style.MARKING, origin)
            if rng.random() < 0.55:
                cars.append(Car(float(sx + 1.3), float(ry), math.pi / 2 + math.pi * int(rng.integers(2)),
                                int(rng.integers(len(style.CAR_COLOURS)))))
    return lot


def _scatter_trees(rng, area, count: int, trees: list[Tree]) -> None:
    if area.is_empty or count <= 0:
        return
    minx, miny, maxx, maxy = area.bounds
    placed = 0
    for _ in range(count * 8):
        if placed >= count:
            break
        x, y = rng.uniform(minx, maxx), rng.uniform(miny, maxy)
        if area.contains(Point(x, y)) and all(math.hypot(t.x - x, t.y - y) > 5 for t in trees[-60:]):
            trees.append(_tree(rng, float(x), float(y)))
            placed += 1


def _furnish_free(cfg: SynthConfig, rng: np.random.Generator, buildings: list[Building]) -> Layout:
    """Ground, roads and trees around footprints read from GeoJSON: buildings are linked by the
    roads of a minimum spanning tree of their centres, with pavements along them."""
    cent = np.array([[b.footprint.centroid.x, b.footprint.centroid.y] for b in buildings])
    allfp = shapely.union_all([b.footprint for b in buildings])
    x0, y0, x1, y1 = allfp.bounds
    extent = (x0 - 40, y0 - 40, x1 + 40, y1 + 40)
    classes, origin = _ground_canvas(extent)
    _draw(classes, box(*extent), style.GRASS, origin)
    n = len(buildings)
    edges = _mst(cent) if n > 1 else []
    roads = [shapely.geometry.LineString([cent[i], cent[j]]) for i, j in edges]
    road_geom = shapely.union_all([r.buffer(ROAD_WIDTH / 2 + PAVEMENT) for r in roads]) if roads else Polygon()
    walk = []
    for r in roads:
        for side in (-1, 1):
            off = r.offset_curve(side * (ROAD_WIDTH / 2 + PAVEMENT / 2))
            if not off.is_empty and off.geom_type == "LineString":
                walk.append(np.asarray(off.coords))
    _draw(classes, road_geom, style.PAVEMENT, origin)
    _draw(classes, shapely.union_all([r.buffer(ROAD_WIDTH / 2) for r in roads]) if roads else Polygon(),
          style.ROAD, origin)
    for b in buildings:
        _draw(classes, b.footprint.buffer(4.0, join_style=2), style.PLAZA, origin)
        walk.append(np.asarray(b.footprint.buffer(12.0, join_style=2).exterior.coords))
    trees: list[Tree] = []
    forbid = allfp.buffer(6).union(road_geom)
    area = box(*extent).difference(forbid)
    _scatter_trees(rng_for(cfg.seed, "free-trees"), area, cfg.trees_per_building * n, trees)
    cars: list[Car] = []
    crng = rng_for(cfg.seed, "free-cars")
    for r in roads:
        for _ in range(max(1, int(r.length / 25))):
            p = r.interpolate(crng.uniform(0.15, 0.85), normalized=True)
            q = r.interpolate(min(r.length, r.project(p) + 1))
            ang = math.atan2(q.y - p.y, q.x - p.x)
            nx, ny = -math.sin(ang), math.cos(ang)
            s = (ROAD_WIDTH / 2 - 1.2) * (1 if crng.random() < 0.5 else -1)
            x, y = p.x + s * nx, p.y + s * ny
            if not allfp.buffer(2).contains(Point(x, y)):
                cars.append(Car(float(x), float(y), float(ang), int(crng.integers(len(style.CAR_COLOURS)))))
    cols = _colours_from_classes(classes, rng_for(cfg.seed, "ground"))
    return Layout(buildings, trees, cars, classes, cols, origin, extent, walk)


def _mst(pts: np.ndarray) -> list[tuple[int, int]]:
    n = len(pts)
    d = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
    inside = {0}
    edges = []
    while len(inside) < n:
        best = None
        for i in inside:
            for j in range(n):
                if j not in inside and (best is None or d[i, j] < best[0]):
                    best = (d[i, j], i, j)
        edges.append((best[1], best[2]))
        inside.add(best[2])
    return edges
