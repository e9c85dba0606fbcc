"""Synthetic georeferenced scenes: forest/water/bare land, two dates, inserted change with exact masks.

Scenes are written in the OSCD folder layout so the same importer reads them:
<scene>/imgs_1|imgs_2/<scene>_B02|B03|B04|B08.tif, <scene>/cm/<scene>-cm.tif (change mask),
<scene>/lc/<scene>-lc.tif (land-cover classes at date 1), dates.txt, <scene>.geojson (a territory),
plus archive.yaml (collection + consent) at the top. CRS is UTM 33N (EPSG:32633), 10 m pixels.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

CRS = "EPSG:32633"
PIXEL_M = 10.0
BANDS = ("B02", "B03", "B04", "B08")
CLASSES = ("forest", "water", "bare")
# Top-of-atmosphere-like reflectance x 10000 per class and band (blue, green, red, near-infrared).
SIGNATURE = np.array([[350, 550, 350, 3200],   # forest: dark visible, bright NIR
                      [700, 600, 400, 150],    # water: NIR absorbed
                      [1300, 1500, 1800, 2300]], dtype=np.float32)  # bare soil
COLLECTION = "demo-lands"
COMMUNITY = "Demo River Nation"


@dataclass(frozen=True)
class SceneTruth:
    """What was inserted in one scene: changed pixels and their area."""

    name: str
    changed_pixels: int
    changed_ha: float
    events: list[tuple[str, int, int, int, int]]  # kind, row, col, half-height, half-width


def _smooth_field(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Blobby random field: coarse noise, bilinearly upsampled (no scipy needed)."""
    gh, gw = h // cell + 2, w // cell + 2
    coarse = rng.normal(size=(gh, gw)).astype(np.float32)
    ys, xs = np.linspace(0, gh - 1.001, h), np.linspace(0, gw - 1.001, w)
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = coarse[y0][:, x0], coarse[y0][:, x0 + 1]
    c, d = coarse[y0 + 1][:, x0], coarse[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def land_classes(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A class map (0 forest, 1 water, 2 bare) of smooth regions, forest dominant."""
    scores = np.stack([_smooth_field(rng, h, w, 24) + 0.6, _smooth_field(rng, h, w, 32) - 0.3,
                       _smooth_field(rng, h, w, 20)])
    return scores.argmax(0).astype(np.uint8)


def render(classes: np.ndarray, rng: np.random.Generator, gain: float) -> np.ndarray:
    """Bands (4, H, W) uint16 for a class map, with texture, a date-wide gain (illumination) and noise."""
    img = SIGNATURE[classes].transpose(2, 0, 1) * gain  # (4, H, W)
    texture = 1 + 0.08 * _smooth_field(rng, *classes.shape, 6)
    img = img * texture[None] + rng.normal(scale=40, size=img.shape)
    return np.clip(img, 1, 10000).astype(np.uint16)


def insert_events(classes: np.ndarray, rng: np.random.Generator, n_events: int) -> tuple[np.ndarray, list]:
    """Date-2 classes: clearings (forest -> bare) and new water (-> water) as ellipses."""
    after = classes.copy()
    h, w = classes.shape
    yy, xx = np.mgrid[0:h, 0:w]
    events = []
    for k in range(n_events):
        kind = "clearing" if k % 3 != 2 else "new_water"
        rh, rw = int(rng.integers(5, 12)), int(rng.integers(5, 12))
        r, c = int(rng.integers(rh + 2, h - rh - 2)), int(rng.integers(rw + 2, w - rw - 2))
        inside = ((yy - r) / rh) ** 2 + ((xx - c) / rw) ** 2 <= 1
        if kind == "clearing":
            after[inside & (classes == 0)] = 2
        else:
            after[inside] = 1
        events.append((kind, r, c, rh, rw))
    return after, events


def _write(path: Path, arr: np.ndarray, transform, crs: str | None, dtype: str) -> None:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": arr.shape[-1], "height": arr.shape[-2], "count": 1, "dtype": dtype,
               "compress": "deflate"}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # masks carry no georeference on purpose
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(arr.astype(dtype), 1)


def territory_geojson(transform, h: int, w: int, inset: int) -> dict:
    """A rectangle INSET pixels inside the scene, as GeoJSON in EPSG:4326 (as GeoJSON requires)."""
    from rasterio.warp import transform_geom

    (x0, y0), (x1, y1) = transform @ (inset, inset), transform @ (w - inset, h - inset)
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    geom = transform_geom(CRS, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}, precision=9)
    return {"type": "FeatureCollection",
            "features": [{"type": "Feature", "properties": {"name": "territory"}, "geometry": geom}]}


def write_scene(folder: Path, name: str, seed: int, size: int = 128, n_events: int = 4,
                shrink_after: int = 0) -> SceneTruth:
    """Write one scene pair; SHRINK_AFTER crops date 2 by that many pixels top-left (transform shifted)."""
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    h = w = size
    x0, y0 = 400000.0 + 5000 * (seed % 50), 5200000.0 - 5000 * (seed // 50)
    transform = from_origin(x0, y0, PIXEL_M, PIXEL_M)
    before_cls = land_classes(rng, h, w)
    after_cls, events = insert_events(before_cls, rng, n_events)
    change = (after_cls != before_cls).astype(np.uint8)
    img1 = render(before_cls, rng, gain=float(rng.uniform(0.9, 1.1)))
    img2 = render(after_cls, rng, gain=float(rng.uniform(0.9, 1.1)))
    d = folder / name
    t2 = from_origin(x0 + shrink_after * PIXEL_M, y0 - shrink_after * PIXEL_M, PIXEL_M, PIXEL_M)
    for b, band in enumerate(BANDS):
        _write(d / "imgs_1" / f"{name}_{band}.tif", img1[b], transform, CRS, "uint16")
        _write(d / "imgs_2" / f"{name}_{band}.tif", img2[b, shrink_after:, shrink_after:], t2, CRS, "uint16")
    _write(d / "cm" / f"{name}-cm.tif", change, None, None, "uint8")  # like OSCD: masks carry no georeference
    _write(d / "lc" / f"{name}-lc.tif", before_cls, None, None, "uint8")
    (d / "dates.txt").write_text("date_1: 20190601\ndate_2: 20230601\n")
    (d / f"{name}.geojson").write_text(json.dumps(territory_geojson(transform, h, w, inset=size // 8)))
    n = int(change.sum())
    return SceneTruth(name, n, n * PIXEL_M * PIXEL_M / 10000, events)


def make_geo_scenes(folder: Path, n_scenes: int = 6, size: int = 128, seed: int = 0,
                    shrink_after: tuple[int, ...] = (), n_events: int = 4) -> list[SceneTruth]:
    """Write N_SCENES scenes and archive.yaml into FOLDER; scenes listed in SHRINK_AFTER get a smaller date 2."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    truths = []
    for i in range(n_scenes):
        name = f"scene{i:02d}"
        truths.append(write_scene(folder, name, seed * 1000 + i, size, n_events,
                                  shrink_after=3 if i in shrink_after else 0))
    info = {
        "collection": {"name": COLLECTION, "community": COMMUNITY,
                       "licence": "synthetic demo data, community terms",
                       "citation": "hearthkit synthetic land scenes (generated)"},
        "collective_consent": [{"subject": COMMUNITY, "given_by": "Demo River Nation land council",
                                "given_at": "2026-01-15", "purposes": ["community_use", "research"]}],
        "labels": [{"key": "bc:provenance", "text": "Generated scenes standing in for community imagery"}],
        "classes": list(CLASSES),
    }
    (folder / "archive.yaml").write_text(yaml.safe_dump(info, sort_keys=False))
    (folder / "cities.txt").write_text("\n".join(t.name for t in truths) + "\n")
    return truths
