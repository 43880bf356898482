"""Style tables of the synthetic campus: facade materials, roof colours, ground, trees, cars.

A campus draws a small palette from these tables; buildings then draw facade and roof from the
palette independently (DESIGN.md section 4: roof colour says little about facade colour).
Colours are sRGB-like albedos in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

# Facade pattern types (the shader switches on these).
BRICK, STONE, CONCRETE, GLASS, STUCCO = 0, 1, 2, 3, 4


@dataclass(frozen=True)
class FacadeStyle:
    name: str
    pattern: int
    colour: tuple[float, float, float]
    glass: tuple[float, float, float]
    frame: tuple[float, float, float]
    floor_height: tuple[float, float]   # metres, per-building range
    bay: tuple[float, float]            # window spacing
    window_width: tuple[float, float]   # fraction of the bay
    window_height: tuple[float, float]  # fraction of the floor


FACADE_STYLES: tuple[FacadeStyle, ...] = (
    FacadeStyle("red brick", BRICK, (0.55, 0.27, 0.20), (0.16, 0.20, 0.25), (0.85, 0.83, 0.78),
                (3.2, 3.8), (2.6, 3.6), (0.40, 0.60), (0.45, 0.60)),
    FacadeStyle("yellow brick", BRICK, (0.74, 0.60, 0.38), (0.14, 0.17, 0.20), (0.30, 0.28, 0.26),
                (3.2, 3.8), (2.6, 3.4), (0.40, 0.55), (0.45, 0.60)),
    FacadeStyle("sandstone", STONE, (0.78, 0.70, 0.55), (0.18, 0.20, 0.22), (0.62, 0.56, 0.45),
                (3.6, 4.4), (3.0, 4.2), (0.35, 0.50), (0.50, 0.65)),
    FacadeStyle("grey concrete", CONCRETE, (0.62, 0.62, 0.60), (0.12, 0.15, 0.19), (0.35, 0.36, 0.38),
                (3.3, 4.0), (2.4, 3.6), (0.50, 0.75), (0.45, 0.60)),
    FacadeStyle("white render", STUCCO, (0.86, 0.85, 0.81), (0.15, 0.19, 0.24), (0.55, 0.55, 0.55),
                (3.0, 3.6), (2.8, 3.8), (0.40, 0.55), (0.45, 0.55)),
    FacadeStyle("blue glass", GLASS, (0.40, 0.47, 0.52), (0.30, 0.42, 0.52), (0.72, 0.74, 0.76),
                (3.6, 4.2), (1.5, 2.2), (0.85, 0.92), (0.70, 0.82)),
    FacadeStyle("dark glass", GLASS, (0.30, 0.32, 0.33), (0.22, 0.26, 0.29), (0.55, 0.56, 0.58),
                (3.6, 4.2), (1.5, 2.0), (0.85, 0.92), (0.70, 0.82)),
    FacadeStyle("terracotta", STUCCO, (0.76, 0.48, 0.33), (0.14, 0.17, 0.20), (0.90, 0.88, 0.82),
                (3.0, 3.6), (2.6, 3.6), (0.40, 0.55), (0.45, 0.55)),
)

# Flat roofs (membrane, gravel) and pitched roofs (tiles, metal) share one colour table.
ROOF_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.40, 0.40, 0.41),  # dark grey membrane
    (0.62, 0.61, 0.58),  # light gravel
    (0.75, 0.75, 0.74),  # white membrane
    (0.50, 0.25, 0.20),  # red tiles
    (0.28, 0.33, 0.36),  # slate
    (0.33, 0.42, 0.33),  # green copper / sedum
    (0.55, 0.47, 0.38),  # brown
)

CAR_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.85, 0.85, 0.86), (0.10, 0.10, 0.11), (0.45, 0.46, 0.48), (0.60, 0.08, 0.07),
    (0.10, 0.20, 0.45), (0.70, 0.70, 0.72), (0.25, 0.30, 0.25), (0.80, 0.65, 0.20),
)

# Ground classes of the ground raster and their base colours.
GRASS, ROAD, PAVEMENT, PLAZA, PARKING, MARKING, FIELD, GRAVEL = range(8)
GROUND_COLOURS: dict[int, tuple[float, float, float]] = {
    GRASS: (0.30, 0.42, 0.20),
    ROAD: (0.27, 0.27, 0.28),
    PAVEMENT: (0.60, 0.58, 0.55),
    PLAZA: (0.68, 0.63, 0.55),
    PARKING: (0.33, 0.33, 0.34),
    MARKING: (0.88, 0.88, 0.86),
    FIELD: (0.42, 0.45, 0.25),
    GRAVEL: (0.58, 0.54, 0.47),
}

TREE_GREENS: tuple[tuple[float, float, float], ...] = (
    (0.16, 0.30, 0.11), (0.22, 0.36, 0.14), (0.12, 0.24, 0.12), (0.30, 0.38, 0.15), (0.24, 0.28, 0.12),
)
TRUNK = (0.30, 0.22, 0.15)
ROOF_UNIT = (0.66, 0.67, 0.68)
