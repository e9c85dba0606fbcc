"""Keyword scoring on CTC posteriorgrams: where a character sequence was probably said, and how surely.

The term is the CTC path `space blank? c1 blank? c2 … cn blank? space` with a free start and end (a keyword-filler
search). Each frame costs log p(unit) - log max_v p(v): zero where the unit is the frame's best, negative otherwise,
so a path scores 0 exactly where the 1-best says the word and falls off smoothly where the posteriors doubt it.
Items are laid end to end with one boundary frame between them that reads as a space, so a word at an item's edge
needs no spoken space and no path crosses from one item into the next.

The Viterbi recursion per state has a closed form over all frames at once: a state entered at frame s and held to
t costs C_t - C_{s-1} (C the cumulative frame costs), so alpha_t = C_t + cummax_s(beta_s - C_{s-1}); one numpy pass
per state (2n+3 states) replaces a Python loop over frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WALL = -1.0e4  # cost of a unit a boundary frame cannot emit


@dataclass(frozen=True)
class Hit:
    """One place a term was probably said: index position of the item, frames [start, end), confidence in (0, 1]."""

    item: int  # position of the item in the posteriorgram list
    start: int
    end: int
    score: float


class Posteriorgram:
    """Frame costs of many items laid end to end (with boundary frames), ready for keyword searches."""

    def __init__(self, logps: list[np.ndarray], space: int | None, vocab: int):
        rows, self.offsets = [], []
        boundary = np.full((1, vocab), WALL, np.float32)
        if space is not None:
            boundary[0, space] = 0.0
        pos = 1
        rows.append(boundary)
        for lp in logps:
            lp = lp.astype(np.float32)
            rows += [lp - lp.max(axis=1, keepdims=True), boundary]
            self.offsets.append(pos)
            pos += len(lp) + 1
        self.cost = np.concatenate(rows) if rows else np.zeros((0, vocab), np.float32)
        self.lengths = [len(lp) for lp in logps]
        self.space = space
        starts = np.array(self.offsets, np.int64)
        self._starts = starts

    def search(self, units: list[int], per_item: int = 3, floor: float = 0.01) -> list[Hit]:
        """Hits of the unit sequence UNITS (ids, no blanks), best first; at most PER_ITEM per item, score > FLOOR."""
        if not units or not len(self.offsets):
            return []
        score, start, end = self._viterbi(units)
        conf = np.exp(score / (len(units) + 2))  # per-unit geometric mean of the posterior ratio
        cand = np.flatnonzero(conf > floor)
        if not len(cand):
            return []
        item = np.searchsorted(self._starts, start[cand], side="right") - 1
        order = np.lexsort((-conf[cand], item))
        hits: list[Hit] = []
        taken: dict[int, list[tuple[int, int]]] = {}
        for k in order:
            i, s, e = int(item[k]), int(start[cand[k]]), int(end[cand[k]])
            base = self.offsets[i]
            s, e = max(s - base, 0), min(e - base, self.lengths[i])
            if e <= s:
                continue
            spans = taken.setdefault(i, [])
            if len(spans) >= per_item or any(s < b and a < e for a, b in spans):
                continue
            spans.append((s, e))
            hits.append(Hit(i, s, e, float(conf[cand[k]])))
        return sorted(hits, key=lambda h: -h.score)

    def _viterbi(self, units: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Best path score ending in the closing space at each frame; the frame its first unit began and the
        frame its closing space began (the term's end)."""
        blank = 0
        space = self.space
        labels: list[int] = []
        first = 0  # state of the first unit
        if space is not None:
            labels += [space, blank]
            first = 2
        for j, u in enumerate(units):
            labels.append(u)
            if j + 1 < len(units):
                labels.append(blank)
        if space is not None:
            labels += [blank, space]
        T = len(self.cost)
        frames = np.arange(T)
        prev_alpha: list[np.ndarray] = []
        prev_start: list[np.ndarray] = []
        prev_entry = np.zeros(T, np.int64)
        for j, lab in enumerate(labels):
            x = self.cost[:, lab].astype(np.float64)
            c = np.cumsum(x)
            c_before = np.concatenate([[0.0], c[:-1]])  # C_{s-1}
            if j == 0:
                beta = np.zeros(T)  # the path may begin at any frame
                beta_start = frames.copy()
            else:
                cands = [(prev_alpha[j - 1], prev_start[j - 1])]
                if j >= 2 and lab != blank and lab != labels[j - 2]:
                    cands.append((prev_alpha[j - 2], prev_start[j - 2]))  # skip the optional blank
                beta = np.full(T, -np.inf)
                beta_start = np.zeros(T, np.int64)
                for a, st in cands:
                    shifted = np.concatenate([[-np.inf], a[:-1]])  # alpha_{s-1}
                    shifted_start = np.concatenate([[0], st[:-1]])
                    better = shifted > beta
                    beta = np.where(better, shifted, beta)
                    beta_start = np.where(better, shifted_start, beta_start)
            v = beta - c_before
            m = np.maximum.accumulate(v)
            entry = np.maximum.accumulate(np.where(v >= m, frames, 0))  # frame the best path entered this state
            alpha = c + m
            start = frames[entry] if j == first else beta_start[entry]
            prev_alpha.append(alpha)
            prev_start.append(start)
            prev_entry = entry
        return prev_alpha[-1], prev_start[-1], prev_entry if space is not None else frames + 1


# --- Scores that one threshold can serve across terms -----------------------------------------------------------
#
# The keyword path score above is comparable within a term (same path length) but not across terms: a long word's
# errors accumulate, a short word matches by chance, and a term said twice in an archive needs a lower threshold
# than one said forty times for the same term-weighted value. Three steps make one global threshold meaningful:
# (1) per item one hit, its confidence the per-unit geometric mean above (length-normalised, keyword-local
# max-pooling); (2) a calibrated probability that the item holds the term, from that confidence, the posterior
# mass of the term in the item's CTC n-best (the decoder's LM sees the whole utterance) and the term's length,
# with weights fitted on queries held out from any evaluation; (3) keyword-specific thresholding (KST, as in NIST
# spoken-term detection): the Bayes threshold of term-weighted value depends on how often the term occurs, so each
# probability is moved by that term's threshold, estimated from the expected count over the searched items.

BETA = 999.9  # NIST's term-weighted value cost of a false alarm (P_target 1e-4, cost ratio 0.1)
FEATURES = ("log_confidence", "nbest_posterior", "in_1best", "n_chars")
LOG_FLOOR = 1e-6  # confidence of an item with no keyword path above the floor


def nbest_posterior(hyps: list[tuple[str, float]], term: str) -> float:
    """Posterior mass of the n-best readings HYPS ((text, log score), any order) that hold TERM as whole words."""
    if not hyps or not term:
        return 0.0
    scores = np.array([s for _, s in hyps], np.float64)
    w = np.exp(scores - scores.max())
    w /= w.sum()
    pad = f" {term} "
    return float(sum(wi for wi, (text, _) in zip(w, hyps, strict=True) if pad in f" {text} "))


def term_features(confidence: np.ndarray, nbest: np.ndarray, in_1best: np.ndarray, n_chars: int) -> np.ndarray:
    """The (items, 4) feature rows of one term over the items searched, in FEATURES order."""
    conf = np.maximum(np.asarray(confidence, np.float64), LOG_FLOOR)
    n = np.full(len(conf), float(n_chars))
    return np.stack([np.log(conf), np.asarray(nbest, np.float64), np.asarray(in_1best, np.float64), n], 1)


@dataclass(frozen=True)
class Calibration:
    """Logistic weights (FEATURES order) and bias turning an item's features into P(item holds the term)."""

    weights: tuple[float, ...]
    bias: float
    fitted_on: str = ""

    def prob(self, x: np.ndarray) -> np.ndarray:
        """P(holds the term) of each feature row of X."""
        z = np.asarray(x, np.float64) @ np.asarray(self.weights) + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

    def to_json(self) -> dict:
        """A JSON-ready form (stored beside an index)."""
        return {"features": list(FEATURES), "weights": list(self.weights), "bias": self.bias,
                "fitted_on": self.fitted_on}

    @classmethod
    def from_json(cls, doc: dict) -> Calibration:
        """The calibration stored by to_json; other features are refused (a stale file)."""
        if list(doc.get("features", [])) != list(FEATURES):
            raise ValueError(f"calibration features {doc.get('features')} are not {list(FEATURES)}")
        return cls(tuple(float(w) for w in doc["weights"]), float(doc["bias"]), str(doc.get("fitted_on", "")))


# Fitted by bench/kws_mboshi.py on the 196 held-out Mboshi dev words (never the 100 evaluation queries) with the
# 450-step Conformer-CTC (CER 0.53), rounded; an index with its own calibration.json uses that instead.
DEFAULT_CALIBRATION = Calibration((3.80, 0.19, 1.46, 0.215), -1.65,
                                  "196 held-out Mboshi dev words, 450-step Conformer-CTC (CER 0.53)")


def fit_calibration(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 50, note: str = "") -> Calibration:
    """Logistic regression of Y (0/1) on the feature rows X by Newton steps with a small L2 penalty."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    a = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(a.shape[1])
    reg = np.eye(a.shape[1]) * l2
    reg[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -40, 40)))
        grad = a.T @ (p - y) + reg @ w
        hess = (a * (p * (1 - p))[:, None]).T @ a + reg
        step = np.linalg.solve(hess + 1e-9 * np.eye(len(w)), grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return Calibration(tuple(float(v) for v in w[:-1]), float(w[-1]), note)


def kst(p: np.ndarray, trials: float, beta: float = BETA) -> np.ndarray:
    """Keyword-specific thresholding of one term's item probabilities P over TRIALS (seconds of speech searched).

    The term-weighted value gains 1/N for a hit and loses beta/(trials - N) for a false alarm, so detecting is
    worth it when p > beta N / (trials + (beta - 1) N), N the term's true count, estimated by the sum of P. Each
    logit is moved by that threshold's logit: after it, 0.5 is every term's own threshold.
    """
    p = np.clip(np.asarray(p, np.float64), 1e-9, 1 - 1e-9)
    if not len(p):
        return p
    n = max(float(p.sum()), 1e-3)
    thr = beta * n / (max(trials, n + 1.0) + (beta - 1.0) * n)
    thr = min(max(thr, 1e-9), 1 - 1e-9)
    z = np.log(p / (1 - p)) - np.log(thr / (1 - thr))
    return 1.0 / (1.0 + np.exp(-z))
