"""Change maps without labels: Otsu, change-vector analysis and IR-MAD on scenes with known change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from hearthkit.data import geo
from hearthkit.monitor.inputs import open_date
from hearthkit.recipes.change.unsupervised import cva, irmad, otsu_threshold, scene_change
from tests.conftest import GEO_TEST_SCENES


def _pair(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four correlated bands; date 2 = other gain/offset per band + noise; 5 % of pixels take a new signature."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 1, (1, n)) * np.array([[1.0], [0.8], [0.6], [1.2]]) + rng.normal(0, 0.3, (4, n))
    x1 = 500 + 100 * base
    x2 = 300 + 140 * base + rng.normal(0, 5, (4, n))
    changed = rng.random(n) < 0.05
    x2[:, changed] += np.array([[-250], [200], [-150], [300]])
    return x1, x2, changed


def _f1(pred: np.ndarray, truth: np.ndarray) -> float:
    tp = (pred & truth).sum()
    return 2 * tp / (pred.sum() + truth.sum())


def test_otsu_splits_two_modes_and_refuses_a_flat_image():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, 5000), rng.normal(10, 1, 500)])
    assert 3 < otsu_threshold(x) < 7
    assert otsu_threshold(np.ones(100)) == float("inf")  # nothing varies: nothing is called changed


def test_cva_and_irmad_find_the_changed_pixels_despite_a_gain_change_between_dates():
    x1, x2, changed = _pair()
    for score in (cva(x1, x2), irmad(x1, x2)):
        assert _f1(score >= otsu_threshold(score), changed) > 0.9
    # IR-MAD is invariant to any per-band linear change of either date (sensor gain, illumination)
    other = irmad(x1 * 3 + 7, x2 * np.array([[0.5], [2], [1], [4]]) - 11)
    assert np.allclose(other, irmad(x1, x2), rtol=1e-4, atol=1e-4)


def test_scene_change_on_generated_geotiffs(geo_scenes: Path):
    name = GEO_TEST_SCENES[0]
    folder = geo_scenes / name
    bands = list(geo.BANDS)
    scene = geo.Scene(name, open_date(folder / "imgs_1", bands), open_date(folder / "imgs_2", bands))
    with rasterio.open(folder / "cm" / f"{name}-cm.tif") as ds:
        truth = ds.read(1) > 0
    for method in ("cva", "irmad"):
        pred, covered = scene_change(scene, method)
        assert pred.shape == truth.shape and covered.all()
        assert _f1(pred, truth) > 0.5, method  # no label used, yet the inserted clearings stand out
