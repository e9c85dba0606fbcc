"""Minimum-Bayes-risk choice among candidate translations, with sentence chrF as the utility."""

from __future__ import annotations

from collections import Counter
from functools import cache

from sacrebleu.metrics.chrf import CHRF
from sacrebleu.metrics.helpers import extract_all_char_ngrams


@cache
def _scorer(beta: float) -> CHRF:
    """sacrebleu's chrF with that beta, otherwise its defaults (char order 6, no word n-grams): what we report."""
    return CHRF(beta=beta)


def chrf(hyp_ngrams: list, ref_ngrams: list, beta: float = 2.0) -> float:
    """Sentence chrF from n-gram counts extracted once per string (sacrebleu's own statistics and F-score).

    sacrebleu's sentence_score extracts both sides' n-grams on every call; MBR compares each candidate with
    every other, so extracting once per candidate makes it several times faster. The test checks it against
    sentence_score.
    """
    stats: list[int] = []
    for h, r in zip(hyp_ngrams, ref_ngrams, strict=True):
        stats.extend(CHRF._get_match_statistics(h, r))
    return _scorer(beta)._compute_f_score(stats)


def ngrams(text: str) -> list:
    """Character n-gram counts of TEXT per order, as sacrebleu's chrF counts them."""
    return extract_all_char_ngrams(text, _scorer(2.0).char_order, _scorer(2.0).whitespace)


def mbr_pick(candidates: list[str], beta: float = 2.0) -> int:
    """Index of the candidate with the highest mean chrF (recall weighted BETA times) against all the others.

    Each candidate stands in for a draw from the model, so the mean estimates the expected chrF of choosing it
    (Kumar and Byrne 2004; Freitag et al. 2022). Duplicates count as often as they occur: a translation the model
    produces often is more likely. Ties go to the earliest candidate (for a beam's n-best, the most probable).
    BETA 2 is the chrF the evaluation reports; it favours candidates that contain the others, i.e. longer ones;
    BETA 1 weighs precision and recall alike.
    """
    if len(candidates) <= 2:  # with two, chrF's asymmetry alone would decide; keep the model's first choice
        return 0
    counts = Counter(candidates)  # first-seen order, as the candidates came
    grams = {c: ngrams(c) for c in counts}
    utility = {}  # per distinct string: duplicates are scored once, weighted by how often they occur
    for hyp in counts:
        utility[hyp] = sum(n * chrf(grams[hyp], grams[ref], beta) for ref, n in counts.items() if ref != hyp) \
            + (counts[hyp] - 1) * chrf(grams[hyp], grams[hyp], beta)  # its own other copies
    return max(range(len(candidates)), key=lambda i: (utility[candidates[i]], -i))
