"""The change recipe's scene-wide area errors (issue 24 audit): measured on scenes the calibration was not fitted on,
with a floor that keeps the interval open where the model sees almost no change; older calibration files read with
the most restricted reading instead of a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hearthkit.evaluate.calibration import apply_platt, fit_platt
from hearthkit.monitor.uncertainty import AreaUncertainty, error_terms
from hearthkit.recipes.change.recipe import RECIPE, area_errors

N = 4000  # validation pixels per scene


def _validation(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Three scenes' validation pixels: two the model reads well, one with 3 % change it does not see at all."""
    p, y, k = [], [], []
    for scene, rate in enumerate((0.05, 0.04, 0.03)):
        truth = rng.random(N) < rate
        if scene < 2:
            prob = np.where(truth, rng.uniform(0.6, 0.95, N), rng.uniform(0.0, 0.1, N))
        else:  # another landscape: the change looks like nothing the model learned
            prob = np.full(N, 0.002)
        p.append(prob.astype(np.float32))
        y.append(truth)
        k.append(np.full(N, scene))
    return np.concatenate(p), np.concatenate(y), np.concatenate(k)


def test_area_errors_are_measured_on_the_scene_left_out_of_the_calibration():
    p, y, k = _validation(np.random.default_rng(3))
    err = area_errors(p, y, k)
    blind = k == 2
    held_out = apply_platt(p[blind], fit_platt(p[~blind], y[~blind]))  # fitted on the two other scenes only
    assert err["area_abs_errors"][2] == pytest.approx((y[blind].sum() - held_out.sum()) / N, rel=1e-5)
    in_sample = apply_platt(p[blind], fit_platt(p, y))  # the old way: fitted on these very pixels too
    assert err["area_abs_errors"][2] != pytest.approx((y[blind].sum() - in_sample.sum()) / N, rel=1e-5)
    assert err["area_abs_errors"][2] > 0.025  # about all of its 3 % change missed
    assert err["area_abs_sd"] == pytest.approx(np.sqrt(np.mean(np.square(err["area_abs_errors"]))))
    assert err["area_rel_sd"] == pytest.approx(np.sqrt(np.mean(np.square(err["area_rel_errors"]))))
    one = area_errors(p[blind], y[blind], k[blind])  # one scene: nothing to hold out, the widest reading
    assert (one["area_rel_sd"], one["area_abs_sd"]) == (1.0, 1.0)


def test_a_scene_where_the_model_sees_almost_no_change_still_gets_an_interval_that_covers_it():
    p, y, k = _validation(np.random.default_rng(4))
    err = area_errors(p, y, k)
    rng = np.random.default_rng(5)
    q = np.full((100, 100), 1e-5)  # the model: "nothing changed here"
    true_m2 = (rng.random(q.shape) < 0.02).sum() * 100.0  # but 2 % did (100 m² pixels)
    acc = AreaUncertainty()
    for r in range(0, 100, 50):
        for c in range(0, 100, 50):
            acc.add(q[r:r + 50, c:c + 50], np.ones((50, 50), bool), np.full((50, 1), 100.0), r, c)
    lo, hi = acc.interval(0.9, rel_sd=err["area_rel_sd"], abs_sd=err["area_abs_sd"])
    assert lo <= true_m2 <= hi and hi - lo > 0.02 * acc.covered_m2  # not degenerate
    nlo, nhi = acc.interval(0.9, rel_sd=err["area_rel_sd"])  # without the floor: collapses onto ~0
    assert nhi < true_m2 / 4
    z = 1.6448536269514722
    assert hi - acc.expected_m2 >= z * err["area_abs_sd"] * acc.covered_m2  # the floor, as docs/geo.md states it


def _prep_folder(tmp_path: Path, calibration: dict) -> Path:
    (tmp_path / "prep.json").write_text(json.dumps({"bands": ["B02"], "stats": {"mean": [0.0], "std": [1.0]}}))
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.4, "calibration": calibration}))
    return tmp_path


def test_an_older_threshold_file_is_read_with_the_most_restricted_reading(tmp_path: Path):
    before_area_terms = {"method": "platt", "a": 0.8, "b": -0.3}  # no area_rel_sd: KeyError once
    cal = RECIPE.load_prep(_prep_folder(tmp_path, before_area_terms))["calibration"]
    assert cal["fitted"] is True and (cal["area_rel_sd"], cal["area_abs_sd"]) == (1.0, 1.0)
    rel, absolute, warned = error_terms(cal)
    assert (rel, absolute) == (1.0, 1.0) and "area_rel_sd or area_abs_sd" in warned[0]
    cal = RECIPE.load_prep(_prep_folder(tmp_path, {**before_area_terms, "area_rel_sd": 0.3}))["calibration"]
    rel, absolute, warned = error_terms(cal)
    assert (rel, absolute) == (0.3, 1.0) and "no measured area_abs_sd" in warned[0]
    failed = {"method": "platt", "a": 1.0, "b": 0.0, "area_rel_sd": 0.2}  # a failed fit stored the identity
    cal = RECIPE.load_prep(_prep_folder(tmp_path, failed))["calibration"]
    assert cal["fitted"] is False and "not calibrated" in error_terms(cal)[2][0]
