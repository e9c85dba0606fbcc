"""The PNG map: after-image (true colour), changes overlaid, territory outline, north arrow, scale bar, legend."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hearthkit.data import geo
from hearthkit.errors import HearthError
from hearthkit.monitor.figures import metres_per_pixel_x

CHANGE_RGB = (255, 0, 200)  # magenta: does not occur in natural-colour imagery, so changes stand out
TERRITORY_RGB = (255, 220, 0)
FOOTER = 64
MAP_MIN = 512  # small scenes are enlarged (nearest neighbour) to at least this


def _rgb(scene: geo.Scene, shape: tuple[int, int]) -> np.ndarray:
    """True-colour (red, green, blue) of the after date at SHAPE, 2-98 % stretched, uint8 (h, w, 3)."""
    x, valid = scene.read_stack("after", geo.full_window(scene), out_shape=shape)  # (C, h, w), bands B02 B03 B04 ..
    rgb = x[[2, 1, 0]]
    out = np.zeros((3, *shape), np.uint8)
    for i, band in enumerate(rgb):
        v = band[valid]
        lo, hi = (np.percentile(v, [2, 98]) if v.size else (0.0, 1.0))
        out[i] = np.clip((band - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return out.transpose(1, 2, 0) * valid[..., None]


def _nice_length(max_m: float) -> float:
    """The largest 1, 2 or 5 x 10^k metres not above MAX_M."""
    k = 10 ** math.floor(math.log10(max_m))
    return max(m * k for m in (1, 2, 5) if m * k <= max_m)


def render_map(scene: geo.Scene, overview, territories: list[dict], path: Path) -> dict:
    """Draw the map PNG at PATH; return where the map sits in it and its scale (for readers and tests)."""
    t = scene.grid.transform
    if t.b != 0 or t.d != 0 or t.e >= 0:
        raise HearthError("the scene's grid is rotated or south-up; warp it to a north-up grid first")
    low_h, low_w = overview.change.shape
    zoom = max(1, MAP_MIN // max(low_h, low_w))
    rgb = _rgb(scene, (low_h, low_w))
    rgb[overview.change > 0] = CHANGE_RGB
    img = Image.fromarray(rgb).resize((low_w * zoom, low_h * zoom), Image.NEAREST)
    map_w, map_h = img.size
    px_size = overview.factor / zoom  # scene pixels per map pixel
    canvas = Image.new("RGB", (max(map_w, 420), map_h + FOOTER), "white")
    canvas.paste(img, (0, 0))
    d = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    inv = ~t
    for geom in territories:  # outlines, in map pixels
        polys = geom["coordinates"] if geom["type"] == "MultiPolygon" else [geom["coordinates"]]
        for poly in polys:
            ring = [tuple(v / px_size for v in inv @ (x, y)) for x, y in poly[0]]
            d.line(ring, fill=TERRITORY_RGB, width=2)
    # north arrow, top right of the map (the grid is north-up)
    ax, ay = map_w - 22, 10
    d.polygon([(ax, ay), (ax - 8, ay + 22), (ax + 8, ay + 22)], fill="white", outline="black")
    d.text((ax - 3, ay + 24), "N", fill="white", font=font, stroke_width=1, stroke_fill="black")
    # scale bar
    m_per_px = metres_per_pixel_x(scene.grid) * px_size
    length_m = _nice_length(m_per_px * map_w / 4)
    bar = length_m / m_per_px
    y0 = map_h + 14
    d.rectangle([10, y0, 10 + bar, y0 + 6], fill="black")
    d.text((10, y0 + 10), f"{length_m / 1000:g} km" if length_m >= 1000 else f"{length_m:g} m", fill="black",
           font=font)
    # legend
    lx = 30 + max(bar, 60)
    d.rectangle([lx, y0, lx + 14, y0 + 10], fill=CHANGE_RGB)
    d.text((lx + 20, y0), "change detected", fill="black", font=font)
    d.rectangle([lx, y0 + 22, lx + 14, y0 + 32], outline=TERRITORY_RGB, width=2)
    d.text((lx + 20, y0 + 22), "territory boundary", fill="black", font=font)
    d.text((lx + 150, y0), "background: after image, true colour", fill="black", font=font)
    canvas.save(path, optimize=True)
    return {"box": [0, 0, map_w, map_h], "scene_pixels_per_map_pixel": px_size, "overview_factor": overview.factor,
            "zoom": zoom, "scale_bar_m": length_m}
