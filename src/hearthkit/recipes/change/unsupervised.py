"""Change maps that need no labels: change-vector analysis with an Otsu threshold, and IR-MAD.

Baselines for the `change` recipe (what a user could run without a single labelled pixel), scored by the
same pixel metrics. CVA: Malila 1980 / Bovolo & Bruzzone 2007; Otsu 1979; IR-MAD: Nielsen 2007,
"The regularized iteratively reweighted MAD method for change detection in multi- and hyperspectral data".
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.stats import chi2

from hearthkit.data import geo


def otsu_threshold(x: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of X's histogram (Otsu 1979)."""
    x = np.asarray(x, np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0 or x.min() == x.max():
        return float("inf")  # nothing varies: call nothing changed
    hist, edges = np.histogram(x, bins)
    mids = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * mids) / np.maximum(w0, 1)
    m1 = (np.sum(hist * mids) - np.cumsum(hist * mids)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _standardise(x: np.ndarray) -> np.ndarray:
    """Per band over the given pixels (C, n): each date on its own scale, as the recipe's `per_date`."""
    return (x - x.mean(1, keepdims=True)) / np.maximum(x.std(1, keepdims=True), 1e-6)


def cva(x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
    """Change-vector magnitude per pixel of two (C, n) dates, each standardised per band first."""
    return np.sqrt(((_standardise(x2) - _standardise(x1)) ** 2).sum(0))


def irmad(x1: np.ndarray, x2: np.ndarray, iters: int = 20, reg: float = 1e-6) -> np.ndarray:
    """IR-MAD chi-square statistic per pixel of two (C, n) dates (large = changed).

    Canonical correlation of the dates gives MAD variates (differences of canonical variates, ordered by
    decreasing variance); each iteration reweights pixels by their probability of no change, so the
    transform is fitted on the invariant pixels.
    """
    x, y = np.asarray(x1, np.float64).T, np.asarray(x2, np.float64).T  # (n, C)
    n, c = x.shape
    w = np.ones(n)
    stat = np.zeros(n)
    old = None
    for _ in range(iters):
        sw = w.sum()
        xc, yc = x - (w @ x) / sw, y - (w @ y) / sw
        sxx = (xc * w[:, None]).T @ xc / sw + reg * np.eye(c)
        syy = (yc * w[:, None]).T @ yc / sw + reg * np.eye(c)
        sxy = (xc * w[:, None]).T @ yc / sw
        rho2, a = linalg.eigh(sxy @ np.linalg.solve(syy, sxy.T), sxx)  # a^T sxx a = I, rho2 ascending
        rho = np.sqrt(np.clip(rho2, 0, 1 - 1e-9))
        b = np.linalg.solve(syy, sxy.T @ a) / np.maximum(rho, 1e-9)
        b /= np.sqrt(np.maximum(np.einsum("ij,ik,kj->j", b, syy, b), 1e-12))  # b^T syy b = 1
        b *= np.sign(np.einsum("ij,ik,kj->j", a, sxy, b))[None, :]  # positively correlated pairs
        mad = xc @ a - yc @ b  # (n, C)
        var = np.maximum(2 * (1 - rho), 1e-9)
        stat = (mad ** 2 / var).sum(1)
        w = 1 - chi2.cdf(stat, c)  # probability of no change
        if old is not None and np.abs(rho - old).max() < 1e-6:
            break
        old = rho
    return stat


def scene_scores(scene: geo.Scene, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(score (H, W), covered (H, W)) of METHOD ('cva' or 'irmad') over a whole scene (float32 scores)."""
    w = geo.full_window(scene)
    x1, v1 = scene.read_stack("before", w)
    x2, v2 = scene.read_stack("after", w)
    covered = v1 & v2
    score = np.zeros(covered.shape, np.float32)
    if covered.sum() > x1.shape[0]:
        # IR-MAD's chi-square statistic is heavy-tailed; its square root (a magnitude, like CVA's) gives Otsu's
        # histogram two modes to split instead of one spike and a long tail.
        score[covered] = cva(x1[:, covered], x2[:, covered]) if method == "cva" else np.sqrt(
            irmad(x1[:, covered], x2[:, covered]))
    return score, covered


def scene_change(scene: geo.Scene, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(binary change (H, W), covered (H, W)) with the scene's own Otsu threshold: no labels anywhere."""
    score, covered = scene_scores(scene, method)
    return (score >= otsu_threshold(score[covered])) & covered, covered
