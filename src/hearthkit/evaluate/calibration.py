"""Calibration of predicted probabilities: reliability table, expected calibration error, Platt scaling."""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), EPS, 1 - EPS)
    return np.log(p) - np.log1p(-p)


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Per equal-width probability bin: pixels, mean predicted probability, observed frequency of the event."""
    p, y = np.asarray(p, np.float64).ravel(), np.asarray(y, bool).ravel()
    idx = np.minimum((p * bins).astype(int), bins - 1)
    n = np.bincount(idx, minlength=bins)
    conf = np.bincount(idx, weights=p, minlength=bins)
    hits = np.bincount(idx, weights=y.astype(float), minlength=bins)
    return [{"lo": i / bins, "hi": (i + 1) / bins, "n": int(n[i]),
             "mean_p": float(conf[i] / n[i]) if n[i] else float("nan"),
             "observed": float(hits[i] / n[i]) if n[i] else float("nan")} for i in range(bins)]


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: pixel-weighted mean |observed - predicted| over equal-width bins."""
    table = reliability(p, y, bins)
    total = sum(b["n"] for b in table)
    return float(sum(b["n"] * abs(b["observed"] - b["mean_p"]) for b in table if b["n"]) / max(total, 1))


def fit_platt(p: np.ndarray, y: np.ndarray) -> dict:
    """Platt scaling sigma(a * logit(p) + b), the log-loss minimised over (a, b) with L-BFGS.

    Returns the identity ({'a': 1, 'b': 0, 'fitted': False}) when there is nothing to fit (one class only) or the
    fit would reverse the ranking (a <= 0): the probabilities stay raw and must not be called calibrated.
    """
    from scipy.optimize import minimize

    z, t = logit(p).ravel(), np.asarray(y, float).ravel()
    if t.size == 0 or t.min() == t.max():
        return {"a": 1.0, "b": 0.0, "fitted": False}
    # Platt's targets keep the fit finite when the classes separate perfectly.
    n1, n0 = t.sum(), t.size - t.sum()
    t = np.where(t > 0, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        s = ab[0] * z + ab[1]
        nll = np.logaddexp(0, s) - t * s  # -[t log q + (1 - t) log(1 - q)], stable for any s
        r = 1 / (1 + np.exp(-np.clip(s, -50, 50))) - t
        return float(nll.mean()), np.array([(r * z).mean(), r.mean()])

    res = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    a, b = (float(v) for v in res.x)
    if not np.isfinite([a, b]).all() or a <= 0:
        return {"a": 1.0, "b": 0.0, "fitted": False}
    return {"a": a, "b": b, "fitted": True}


def is_fitted(cal: dict | None) -> bool:
    """Whether CAL is a Platt fit that succeeded (None, a failed fit, or a malformed one: not calibrated).

    Files written before 'fitted' was stored are read by their parameters: a failed fit stored the identity.
    """
    if not isinstance(cal, dict):
        return False
    try:
        a, b = float(cal["a"]), float(cal["b"])
    except (KeyError, TypeError, ValueError):
        return False
    if "fitted" in cal:
        return cal["fitted"] is True and np.isfinite([a, b]).all() and a > 0
    return bool(np.isfinite([a, b]).all()) and a > 0 and (a, b) != (1.0, 0.0)


def apply_platt(p: np.ndarray, cal: dict | None) -> np.ndarray:
    """Calibrated probabilities (float32) of raw probabilities P under a Platt fit CAL (None: unchanged)."""
    if not cal:
        return np.asarray(p, np.float32)
    return (1 / (1 + np.exp(-(cal["a"] * logit(p) + cal["b"])))).astype(np.float32)
