"""Sliding-window change inference over whole scenes, written tile by tile to GeoTIFFs, with territory figures."""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.features import geometry_mask

from hearthkit.data import geo
from hearthkit.monitor.figures import load_territories, metres_per_pixel_x, polygon_area_m2, row_areas_m2
from hearthkit.monitor.inputs import LoadedModel, range_warnings
from hearthkit.monitor.uncertainty import BLOCK, AreaUncertainty, error_terms

MAP_SIDE = 800  # longest side of the PNG map in pixels
FULLY_COVERED = 0.99  # below this share of a territory with data on both dates, its figures carry a warning


@dataclass
class Tally:
    """Covered and changed area inside one territory (or the whole scene)."""

    name: str
    geometry: dict | None
    area_m2: float = 0.0
    changed_m2: float = 0.0
    changed_pixels: int = 0
    sure: AreaUncertainty = field(default_factory=AreaUncertainty)
    full_m2: float = 0.0  # the polygon's whole area (the grid's for the whole scene), covered or not

    def row(self, grid, level: float, rel_sd: float = 1.0, abs_sd: float = 1.0) -> dict:
        """The figures of this territory; none at all (null) where no pixel of it has data on both dates."""
        covered = min(1.0, self.area_m2 / self.full_m2) if self.full_m2 > 0 else 0.0
        out = {"name": self.name, "area_ha": self.area_m2 / 1e4, "polygon_ha": self.full_m2 / 1e4,
               "covered_fraction": covered, "interval_level": level}
        if self.area_m2 <= 0:  # not covered: a 0.00 ha figure would read as "nothing changed"
            return {**out, "changed_ha": None, "changed_pixels": 0, "percent_changed": None,
                    "expected_changed_ha": None, "interval_ha": None, "unsure_ha": None, "least_sure": []}
        lo, hi = self.sure.interval(level, rel_sd=rel_sd, abs_sd=abs_sd)
        return {**out, "changed_ha": self.changed_m2 / 1e4, "changed_pixels": self.changed_pixels,
                "percent_changed": 100 * self.changed_m2 / self.area_m2,
                "expected_changed_ha": self.sure.expected_m2 / 1e4, "interval_ha": [lo / 1e4, hi / 1e4],
                "unsure_ha": self.sure.unsure_m2 / 1e4, "least_sure": self.sure.least_sure(grid)}

    def warning(self) -> str | None:
        """A line for the steward when part or all of this territory has no data on both dates."""
        if self.full_m2 <= 0 or self.area_m2 >= FULLY_COVERED * self.full_m2:
            return None
        where = "the scene" if self.geometry is None else f"territory {self.name!r}"
        if self.area_m2 <= 0:
            return f"{where}: not covered (no pixel with data on both dates inside it): no figures for it"
        return (f"{where}: only {self.area_m2 / self.full_m2:.0%} of its {self.full_m2 / 1e4:,.1f} ha has data on "
                "both dates (outside the scene or no data): its figures are for that part only")


def json_safe(x):
    """X with every non-finite float as None: strict JSON (monitor.json, the web API) has no NaN."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_safe(v) for v in x]
    return x


@dataclass
class Overview:
    """A reduced copy of the change map for the PNG: cell = max over FACTOR x FACTOR pixels."""

    factor: int
    change: np.ndarray = field(default=None)  # type: ignore[assignment]

    @classmethod
    def for_grid(cls, height: int, width: int) -> Overview:
        f = max(1, math.ceil(max(height, width) / MAP_SIDE))
        return cls(f, np.zeros((math.ceil(height / f), math.ceil(width / f)), np.uint8))

    def add(self, core, binary: np.ndarray) -> None:
        rr = (int(core.row_off) + np.arange(binary.shape[0])) // self.factor
        cc = (int(core.col_off) + np.arange(binary.shape[1])) // self.factor
        np.maximum.at(self.change, (rr[:, None], cc[None, :]), binary)


def _profile(grid, dtype: str, nodata) -> dict:
    tiled = grid.width >= 256 and grid.height >= 256
    p = {"driver": "GTiff", "width": grid.width, "height": grid.height, "count": 1, "dtype": dtype,
         "crs": grid.crs, "transform": grid.transform, "compress": "deflate", "nodata": nodata}
    if tiled:
        p.update(tiled=True, blockxsize=256, blockysize=256)
    return p


def run_monitor(lm: LoadedModel, scene: geo.Scene, out: Path, territory: Path | None = None,
                progress=None, standardise: str | None = None, level: float = 0.9) -> dict:
    """Write probability and binary change GeoTIFFs of SCENE into OUT; return the figures (also monitor.json).

    STANDARDISE 'per_date' scales each date by its own band statistics (another sensor, other DNs); None keeps
    the model's setting. Probabilities are the model's calibrated ones when it has a calibration; changed
    hectares come with a LEVEL interval (see monitor.uncertainty).
    """
    import torch

    from hearthkit.evaluate.calibration import apply_platt, is_fitted

    out = Path(out)
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    grid = scene.grid
    raw_threshold = float(lm.prep.get("threshold", 0.5))
    cal = lm.prep.get("calibration")  # None for models trained before issue 24: raw probabilities
    fitted = is_fitted(cal)  # a failed fit stored the identity: raw probabilities, not calibrated ones
    use = cal if fitted else None
    threshold = float(apply_platt(np.array([raw_threshold]), use)[0])  # the same cut, in calibrated units
    mode = standardise or getattr(lm.cfg, "normalise", "training")
    rel_sd, abs_sd, cal_warnings = error_terms(cal)  # scene-wide errors measured on validation, or the widest
    warnings = range_warnings(scene, lm.prep["stats"], lm.prep["bands"], mode) + cal_warnings
    block = math.gcd(BLOCK, lm.cfg.tile)  # cells never straddle two tiles (ChangeConfig keeps tile % BLOCK == 0)
    grid_m2 = float(row_areas_m2(grid, 0, grid.height).sum()) * grid.width
    tallies = [Tally("whole scene", None, sure=AreaUncertainty(block), full_m2=grid_m2)]
    if territory is not None:
        tallies += [Tally(name, g, sure=AreaUncertainty(block), full_m2=polygon_area_m2(g, grid))
                    for name, g in load_territories(territory, grid.crs)]
    overview = Overview.for_grid(grid.height, grid.width)
    tiles = list(geo.tiles_with_margin(grid.height, grid.width, lm.cfg.tile, lm.cfg.margin))
    t0 = time.perf_counter()
    n_pixels = 0
    with torch.inference_mode(), \
            rasterio.open(tmp / "change_probability.tif", "w", **_profile(grid, "float32", -1.0)) as prob_ds, \
            rasterio.open(tmp / "change.tif", "w", **_profile(grid, "uint8", 255)) as bin_ds:
        prob_ds.update_tags(model=lm.name, threshold=str(threshold), meaning="probability of change, -1 = no data")
        bin_ds.update_tags(model=lm.name, threshold=str(threshold), meaning="1 change, 0 no change, 255 no data")
        from hearthkit.recipes.change.recipe import predict_tiles

        for i, (core, raw, covered) in enumerate(predict_tiles(lm.model, scene, lm.prep["stats"], lm.cfg,
                                                                normalise=mode)):
            binary = ((raw >= raw_threshold) & covered).astype(np.uint8)
            prob = apply_platt(raw, use)
            prob_ds.write(np.where(covered, prob, -1.0).astype(np.float32), 1, window=core)
            bin_ds.write(np.where(covered, binary, 255).astype(np.uint8), 1, window=core)
            overview.add(core, binary)
            areas = row_areas_m2(grid, int(core.row_off), binary.shape[0])[:, None]  # (h, 1) m² per pixel
            wt = grid.window_transform(core)
            for t in tallies:
                inside = covered if t.geometry is None else covered & geometry_mask(
                    [t.geometry], out_shape=binary.shape, transform=wt, invert=True)
                t.area_m2 += float((areas * inside).sum())
                t.changed_m2 += float((areas * (inside & (binary > 0))).sum())
                t.changed_pixels += int((inside & (binary > 0)).sum())
                t.sure.add(prob, inside, areas, int(core.row_off), int(core.col_off))
            n_pixels += int(covered.size)
            if progress:
                progress(i + 1, len(tiles))
    inference_s = time.perf_counter() - t0
    warnings += [w for w in (t.warning() for t in tallies) if w]
    summary = {"model": lm.name, "threshold": threshold, "threshold_uncalibrated": raw_threshold,
               "calibration": None if cal is None else {**cal, "fitted": fitted},
               "interval_terms": {"area_rel_sd": rel_sd, "area_abs_sd": abs_sd},
               "standardise": mode, "warnings": warnings,
               "crs": grid.crs.to_string() if grid.crs else None,
               "transform": list(grid.transform)[:6], "width": grid.width, "height": grid.height,
               "cell": {"pixels": block, "metres": block * metres_per_pixel_x(grid)},  # from the transform
               "pixels": n_pixels, "inference_s": inference_s, "tiles": len(tiles),
               "territories": [t.row(grid, level, rel_sd, abs_sd) for t in tallies],
               "restrictions": lm.restrictions, "attribution": lm.attribution}
    from hearthkit.monitor.mapping import render_map
    from hearthkit.monitor.report import write_report

    summary["map"] = render_map(scene, overview, [t.geometry for t in tallies if t.geometry], tmp / "map.png")
    summary = json_safe(summary)
    write_report(summary, tmp / "report.html", tmp / "map.png")
    (tmp / "monitor.json").write_text(json.dumps(summary, indent=1, allow_nan=False))
    shutil.rmtree(out, ignore_errors=True)  # replace a previous result whole, never half
    tmp.replace(out)
    return summary
