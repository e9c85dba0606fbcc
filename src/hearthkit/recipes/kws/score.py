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
