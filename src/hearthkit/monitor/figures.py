"""Pixel areas on a grid (projected or geographic) and territory polygons on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from hearthkit.errors import HearthError


def row_areas_m2(grid, row0: int, n: int) -> np.ndarray:
    """Area in m² of one pixel on each of rows ROW0..ROW0+N of GRID (depends on latitude in a geographic CRS)."""
    t = grid.transform
    if grid.crs is not None and grid.crs.is_geographic:
        lat = np.radians(t.f + t.e * (row0 + np.arange(n) + 0.5))
        m_lat = 111132.954 - 559.822 * np.cos(2 * lat) + 1.175 * np.cos(4 * lat)  # metres per degree
        m_lon = 111412.84 * np.cos(lat) - 93.5 * np.cos(3 * lat)
        return np.abs(t.a * m_lon * t.e * m_lat)
    unit = grid.crs.linear_units_factor[1] if grid.crs is not None else 1.0
    return np.full(n, abs(t.a * t.e - t.b * t.d) * unit * unit)


def metres_per_pixel_x(grid) -> float:
    """Ground width of one pixel at the scene's centre row (for the scale bar)."""
    t = grid.transform
    if grid.crs is not None and grid.crs.is_geographic:
        lat = math.radians(t.f + t.e * grid.height / 2)
        return abs(t.a) * (111412.84 * math.cos(lat) - 93.5 * math.cos(3 * lat))
    unit = grid.crs.linear_units_factor[1] if grid.crs is not None else 1.0
    return abs(t.a) * unit


def load_territories(path: Path, crs) -> list[tuple[str, dict]]:
    """(name, geometry in CRS) per polygon feature of a GeoJSON file (coordinates in EPSG:4326, as GeoJSON says)."""
    from rasterio.warp import transform_geom

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise HearthError(f"{path}: not a readable GeoJSON file ({exc})") from None
    feats = data.get("features") if data.get("type") == "FeatureCollection" else [data]
    out = []
    for i, f in enumerate(feats or []):
        geom = f.get("geometry") if f.get("type") == "Feature" else f
        if not geom or geom.get("type") not in ("Polygon", "MultiPolygon"):
            continue
        name = str((f.get("properties") or {}).get("name") or f"polygon {i + 1}")
        out.append((name, transform_geom("EPSG:4326", crs, geom) if crs is not None else geom))
    if not out:
        raise HearthError(f"{path}: no Polygon or MultiPolygon features; draw the territory as a polygon")
    return out


MAX_AREA_CELLS = 4_000_000  # a territory wider than this many pixels is measured on coarser cells


def polygon_area_m2(geometry: dict, grid) -> float:
    """Area in m² of GEOMETRY (in GRID's CRS) measured as covered area is: pixel centres on GRID's lattice extended
    to the polygon's bounds (inside the scene or not), each with its row's area; coarser cells for a huge one."""
    from rasterio.features import bounds, geometry_mask
    from rasterio.transform import Affine
    from rasterio.windows import from_bounds

    from hearthkit.data.geo import Grid

    win = from_bounds(*bounds(geometry), transform=grid.transform)
    r0, c0 = math.floor(win.row_off), math.floor(win.col_off)
    h, w = math.ceil(win.row_off + win.height) - r0, math.ceil(win.col_off + win.width) - c0
    f = max(1, math.ceil(math.sqrt(h * w / MAX_AREA_CELLS)))
    hs, ws = max(1, math.ceil(h / f)), max(1, math.ceil(w / f))
    t = grid.transform @ Affine.translation(c0, r0) @ Affine.scale(f)
    inside = geometry_mask([geometry], out_shape=(hs, ws), transform=t, invert=True)
    return float((row_areas_m2(Grid(ws, hs, t, grid.crs), 0, hs) * inside.sum(1)).sum())
