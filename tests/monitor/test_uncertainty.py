"""Changed-area intervals: on generated scenes with known change and calibrated probabilities, they cover the truth.

What this checks, honestly: the probability model is synthetic. Each scene has a smooth "evidence" field L
(what a model sees) and the true change is L + e > 0, with e spatially correlated noise (correlation length
~2 pixels, shorter than a 16-pixel cell). The probability given to each pixel is P(change | L) = Phi(L):
calibrated by construction, as the change recipe's Platt scaling aims to be. The interval must cover the true
changed area in at least 90 % of 50 scenes at the 90 % level; the independent-pixel interval must not (it
ignores that neighbouring errors go together), which is why the monitor does not use it.
"""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import from_origin
from scipy.ndimage import gaussian_filter
from scipy.stats import norm

from hearthkit.data import geo
from hearthkit.monitor.uncertainty import AreaUncertainty, block_sums

PIXEL_M2 = 100.0


def _scene(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
    evidence = gaussian_filter(rng.normal(size=(size, size)), 5)
    evidence = evidence / evidence.std() * 1.5 - 1.8  # mostly unchanged, some clear change, unsure edges
    noise = gaussian_filter(rng.normal(size=(size, size)), 2)
    noise /= noise.std()
    return norm.cdf(evidence), evidence + noise > 0  # calibrated probability, true change


def _estimate(q: np.ndarray, tile: int = 32) -> AreaUncertainty:
    """Accumulated tile by tile as the monitor does (tiles a multiple of the cell size)."""
    acc = AreaUncertainty()
    inside = np.ones_like(q, bool)
    for core, _ in geo.tiles_with_margin(*q.shape, tile, 0):
        r, c, h, w = int(core.row_off), int(core.col_off), int(core.height), int(core.width)
        acc.add(q[r:r + h, c:c + w], inside[r:r + h, c:c + w], np.full((h, 1), PIXEL_M2), r, c)
    return acc


def test_the_90_percent_interval_covers_the_true_changed_area_in_at_least_90_percent_of_50_scenes():
    rng = np.random.default_rng(2024)
    covered = naive_covered = 0
    widths = []
    for _ in range(50):
        q, truth = _scene(rng)
        est = _estimate(q)
        true_m2 = truth.sum() * PIXEL_M2
        lo, hi = est.interval(0.9)
        covered += lo <= true_m2 <= hi
        nlo, nhi = est.interval(0.9, independent=True)
        naive_covered += nlo <= true_m2 <= nhi
        widths.append((hi - lo) / max(est.expected_m2, 1))
        assert abs(est.expected_m2 - (q * PIXEL_M2).sum()) < 1e-6 * est.covered_m2  # every pixel once
    assert covered >= 45, covered
    assert naive_covered < 40, naive_covered  # ignoring spatial correlation: too narrow
    assert np.median(widths) < 1.5  # and the interval still says something (not [0, everything])


def test_cells_least_sure_are_found_across_tiles_and_located_on_the_grid():
    q = np.full((64, 64), 0.01)
    q[40:58, 16:32] = 0.5  # a patch the model cannot decide on, over two cells of the second row of tiles
    q[0:4, 48:64] = 0.4  # a quarter of a cell
    est = _estimate(q)
    grid = geo.Grid(64, 64, from_origin(500000, 4000000, 10, 10), None)
    places = est.least_sure(grid)
    assert [(p["row"], p["col"]) for p in places] == [(48, 16), (32, 16), (0, 48)]  # 16-px cells, most first
    assert [p["unsure_ha"] for p in places] == [n * 16 * PIXEL_M2 / 1e4 for n in (10, 8, 4)]
    assert est.unsure_m2 == (18 + 4) * 16 * PIXEL_M2
    assert (places[0]["x"], places[0]["y"]) == (500000 + 24 * 10, 4000000 - 56 * 10)  # the cell's centre
    assert block_sums(np.ones((5, 7)), 4).tolist() == [[16, 12], [4, 3]]


def test_a_scene_wide_relative_error_widens_the_interval_by_that_share_of_the_expected_area():
    rng = np.random.default_rng(7)
    q, _ = _scene(rng)
    est = _estimate(q)
    lo, hi = est.interval(0.9)
    wlo, whi = est.interval(0.9, rel_sd=0.5)
    z = norm.ppf(0.95)
    assert wlo < lo and whi > hi
    assert (whi - est.expected_m2) == pytest.approx(z * np.sqrt(est.variance_m4 + (0.5 * est.expected_m2) ** 2))
    assert est.interval(0.9, rel_sd=100.0) == (0.0, est.covered_m2)  # never past what can be true
