"""Calibration: reliability table, ECE and Platt scaling on probabilities with a known miscalibration."""

from __future__ import annotations

import numpy as np

from hearthkit.evaluate.calibration import apply_platt, ece, fit_platt, is_fitted, logit, reliability


def _overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True event probabilities, outcomes drawn from them, and a model's raw scores that are too sure."""
    rng = np.random.default_rng(seed)
    true_p = 1 / (1 + np.exp(-rng.normal(-2.5, 1.5, n)))  # rare events, like changed pixels
    y = rng.random(n) < true_p
    raw = 1 / (1 + np.exp(-(2.5 * logit(true_p) + 1.0)))  # sharper and shifted: overconfident
    return true_p, y, raw


def test_platt_scaling_fitted_on_one_half_removes_the_miscalibration_on_the_other():
    true_p, y, raw = _overconfident(40000, 0)
    fit, held = slice(0, 20000), slice(20000, None)
    cal = fit_platt(raw[fit], y[fit])
    # the generator is sigma(2.5 z + 1): the exact inverse is a = 1/2.5, b = -1/2.5
    assert abs(cal["a"] - 0.4) < 0.05 and abs(cal["b"] + 0.4) < 0.15
    before, after = ece(raw[held], y[held]), ece(apply_platt(raw[held], cal), y[held])
    assert before > 0.05 and after < 0.015 and after < before / 4
    assert abs(ece(true_p[held], y[held]) - after) < 0.01  # as good as knowing the truth
    table = reliability(apply_platt(raw[held], cal), y[held])
    assert sum(b["n"] for b in table) == 20000 and len(table) == 10
    for b in table:
        if b["n"] > 500:  # well-filled bins: observed frequency close to the stated probability
            assert abs(b["observed"] - b["mean_p"]) < 0.05


def test_platt_refuses_what_it_cannot_fit_and_keeps_the_ranking():
    p = np.linspace(0.01, 0.99, 50)
    failed = {"a": 1.0, "b": 0.0, "fitted": False}  # stored as not fitted: never labelled calibrated
    assert fit_platt(p, np.zeros(50, bool)) == failed  # one class only: nothing to learn
    assert fit_platt(np.zeros(0), np.zeros(0, bool)) == failed
    assert fit_platt(p, p < 0.5) == failed  # the fit would reverse the ranking: keep raw
    assert not is_fitted(failed) and not is_fitted(None) and not is_fitted({"a": 1.0})
    assert not is_fitted({"a": 1.0, "b": 0.0})  # an older file without 'fitted': the identity was a failed fit
    assert np.array_equal(apply_platt(p, None), p.astype(np.float32))
    cal = fit_platt(p, p > 0.5)  # perfectly separated: Platt's targets keep the fit finite
    assert is_fitted(cal) and is_fitted({"a": cal["a"], "b": cal["b"]})
    q = apply_platt(p, cal)
    assert np.isfinite(q).all() and (np.diff(q) >= 0).all()
