"""How sure the change figures are: expected changed area with an interval, and where the model is least sure.

From calibrated per-pixel change probabilities q: the expected changed area is sum(area * q). Its variance
is NOT the independent-pixel (Poisson-binomial) sum(area^2 q (1-q)): a model's errors are spatially
correlated (a whole field or building is right or wrong together), and that interval would be far too
narrow. Pixels are grouped in BLOCK x BLOCK cells taken as fully correlated inside (each cell's standard
deviation is the sum of its pixels') and independent between cells: variance = sum over cells of
(sum area * sqrt(q (1-q)))^2, an upper bound for any correlation shorter than a cell. The interval is the
normal approximation, clipped to [0, covered area]. Two scene-wide terms measured by the change recipe on
validation strips of scenes its calibration was not fitted on (`error_terms`) are added: a relative one
(area_rel_sd x expected area) and an absolute floor (area_abs_sd x covered area), so a scene where the model
sees almost no change still gets an interval as wide as the area errors seen on validation.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm

BLOCK = 16  # pixels: at 10 m, 160 m cells, a few buildings or a small field
UNSURE = (0.2, 0.8)  # a calibrated probability in this range: the model cannot tell
N_PLACES = 5


def block_sums(a: np.ndarray, block: int) -> np.ndarray:
    """Sums of A (h, w) over BLOCK x BLOCK cells anchored at A's top-left (partial cells at the edges)."""
    h, w = a.shape
    hp, wp = -(-h // block) * block, -(-w // block) * block
    padded = np.zeros((hp, wp), a.dtype)
    padded[:h, :w] = a
    return padded.reshape(hp // block, block, wp // block, block).sum((1, 3))


@dataclass
class AreaUncertainty:
    """Accumulates, tile by tile, the expected changed area, its cell-correlated variance, and unsure places."""

    block: int = BLOCK
    expected_m2: float = 0.0
    variance_m4: float = 0.0
    independent_variance_m4: float = 0.0  # kept to show how much narrower the naive interval would be
    unsure_m2: float = 0.0
    covered_m2: float = 0.0
    places: list = field(default_factory=list)  # heap of (unsure m², row, col) of the cells least sure

    def add(self, q: np.ndarray, inside: np.ndarray, areas: np.ndarray, row_off: int, col_off: int) -> None:
        """Add one tile: calibrated probabilities Q (h, w), pixels counted INSIDE, AREAS m² per pixel (h, 1).

        ROW_OFF/COL_OFF (the tile's place on the grid) must be multiples of the block, so cells never straddle
        two tiles (the monitor's tile sides are multiples of it).
        """
        a = np.broadcast_to(areas, q.shape) * inside
        q = np.where(inside, q, 0.0).astype(np.float64)
        sd = a * np.sqrt(q * (1 - q))
        self.expected_m2 += float((a * q).sum())
        self.variance_m4 += float((block_sums(sd, self.block) ** 2).sum())
        self.independent_variance_m4 += float((sd ** 2).sum())
        self.covered_m2 += float(a.sum())
        unsure = a * ((q >= UNSURE[0]) & (q <= UNSURE[1]))
        self.unsure_m2 += float(unsure.sum())
        cells = block_sums(unsure, self.block)
        for i, j in zip(*np.nonzero(cells), strict=True):
            item = (float(cells[i, j]), row_off + int(i) * self.block, col_off + int(j) * self.block)
            if len(self.places) < N_PLACES:
                heapq.heappush(self.places, item)
            elif item > self.places[0]:
                heapq.heapreplace(self.places, item)

    def interval(self, level: float = 0.9, independent: bool = False, rel_sd: float = 0.0,
                 abs_sd: float = 0.0) -> tuple[float, float]:
        """(low, high) m² of changed area at LEVEL (normal approximation, clipped to [0, covered]).

        REL_SD adds an error shared by the whole scene, relative to the expected area, and ABS_SD one relative
        to the covered area (the change recipe measures both across validation strips: `area_rel_sd`,
        `area_abs_sd`); ABS_SD keeps the interval open when the expected area is near zero.
        """
        z = norm.ppf(0.5 + level / 2)
        var = self.independent_variance_m4 if independent else self.variance_m4
        # sd² = cells + (area_rel_sd · expected)² + (area_abs_sd · covered)²: half-width >= z · area_abs_sd · covered
        sd = math.sqrt(var + (rel_sd * self.expected_m2) ** 2 + (abs_sd * self.covered_m2) ** 2)
        return max(0.0, self.expected_m2 - z * sd), min(self.covered_m2, self.expected_m2 + z * sd)

    def least_sure(self, grid) -> list[dict]:
        """The cells with the most unsure area, most first: their centre (grid CRS and lon/lat) and hectares."""
        from rasterio.warp import transform as warp

        out = []
        for unsure, r, c in sorted(self.places, reverse=True):
            x, y = grid.transform @ (c + self.block / 2, r + self.block / 2)
            place = {"row": r, "col": c, "pixels": self.block, "unsure_ha": unsure / 1e4, "x": x, "y": y}
            if grid.crs is not None:
                lon, lat = warp(grid.crs, "EPSG:4326", [x], [y])
                place.update(lon=round(lon[0], 6), lat=round(lat[0], 6))
            out.append(place)
        return out


WIDEST = 1.0  # a scene-wide error term nobody measured: +-100 % (of the expected, or of the covered area)


def error_terms(cal: dict | None) -> tuple[float, float, list[str]]:
    """(area_rel_sd, area_abs_sd, warnings) the interval uses under calibration CAL: the widest reading (WIDEST)
    for a model without a successful calibration, or for a term its calibration never measured."""
    from hearthkit.evaluate.calibration import is_fitted

    if not is_fitted(cal):
        why = "the model has none" if not cal else "its calibration fit failed; the probabilities are raw"
        return WIDEST, WIDEST, [f"change probabilities are not calibrated ({why}): the expected areas may be far "
                                "off, so each interval is the widest reading (from none to all of the covered "
                                "area); re-evaluate or retrain the model to calibrate it"]
    out, missing = [], []
    for key in ("area_rel_sd", "area_abs_sd"):
        v = cal.get(key)
        ok = isinstance(v, int | float) and math.isfinite(v) and v >= 0 and key not in cal.get("unmeasured", ())
        out.append(float(v) if ok else WIDEST)
        if not ok:
            missing.append(key)
    warn = [f"the model's calibration has no measured {' or '.join(missing)} (calibrated by an older hearthkit): "
            "that term of the interval is taken at its widest (100 %); re-evaluate the model to measure it"]
    return out[0], out[1], warn if missing else []
