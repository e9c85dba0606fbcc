"""Metrics overall and per group (CER/WER via jiwer, chrF/BLEU via sacrebleu, bits per character, pixel F1/IoU),
with bootstrap confidence intervals and the best-worst gap."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable

import jiwer

from hearthkit.evaluate.pixel import METRICS as PIXEL_METRICS


def _rate(refs: list[str], hyps: list[str], metric: str) -> float:
    """Corpus-level error rate: total edits over total reference length (jiwer)."""
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not pairs:
        return float("nan")
    r, h = [p[0] for p in pairs], [p[1] for p in pairs]
    return float(jiwer.cer(r, h) if metric == "cer" else jiwer.wer(r, h))


def _sacre(name: str):
    """A sacrebleu metric object with its default (signature-printed) settings."""
    from sacrebleu.metrics import BLEU, CHRF

    return CHRF() if name == "chrf" else BLEU()


def signatures(metrics: tuple[str, ...]) -> dict[str, str]:
    """sacrebleu signatures of the sacrebleu metrics among METRICS (print them next to the numbers)."""
    out = {}
    for m in metrics:
        if m in ("chrf", "bleu"):
            metric = _sacre(m)
            metric.corpus_score(["x"], [["x"]])  # sacrebleu knows the reference count only after one call
            out[m] = str(metric.get_signature())
    return out


def _sacre_stats(records: list[dict], metric: str) -> list[list]:
    """Per-record sufficient statistics, computed once per record and cached on it (bootstrap sums them)."""
    key = f"_{metric}_stats"
    todo = [x for x in records if key not in x]
    if todo:
        m = _sacre(metric)
        stats = m._extract_corpus_statistics([x["hypothesis"] for x in todo], [[x["reference"] for x in todo]])
        for x, s in zip(todo, stats, strict=True):
            x[key] = s
    return [x[key] for x in records]


def _sacre_score(records: list[dict], metric: str) -> float:
    """Corpus chrF or BLEU over RECORDS: sum of per-sentence statistics, as sacrebleu's corpus_score does."""
    if not records:
        return float("nan")
    stats = _sacre_stats(records, metric)
    total = [sum(col) for col in zip(*stats, strict=True)]
    return float(_sacre(metric)._compute_score_from_stats(total).score)


def _bits(records: list[dict], per: str) -> float:
    """Total bits over total characters (bpc) or 2**(bits per token) (perplexity) of LM records."""
    bits = sum(x["bits"] for x in records)
    n = sum(x[per] for x in records)
    if not n:
        return float("nan")
    return bits / n if per == "chars" else 2.0 ** (bits / n)


METRICS: dict[str, Callable[[list[dict]], float]] = {
    "cer": lambda r: _rate([x["reference"] for x in r], [x["hypothesis"] for x in r], "cer"),
    "wer": lambda r: _rate([x["reference"] for x in r], [x["hypothesis"] for x in r], "wer"),
    "chrf": lambda r: _sacre_score(r, "chrf"),
    "bleu": lambda r: _sacre_score(r, "bleu"),
    "bpc": lambda r: _bits(r, "chars"),
    "ppl": lambda r: _bits(r, "tokens"),
}


def score(records: list[dict], metric: str) -> float:
    """METRIC over RECORDS: text metrics from reference/hypothesis (or LM bits), pixel metrics from summed counts."""
    if metric in PIXEL_METRICS:
        return PIXEL_METRICS[metric](records)
    return METRICS[metric](records)


def bootstrap_ci(records: list[dict], metric: str, n: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of METRIC, resampling items."""
    if len(records) < 2:
        return (float("nan"), float("nan"))
    rng = random.Random(seed)
    vals = sorted(score([rng.choice(records) for _ in records], metric) for _ in range(n))
    return vals[int(0.025 * (n - 1))], vals[int(0.975 * (n - 1))]


def disaggregate(records: list[dict], by: list[str], metrics: tuple[str, ...] = ("cer", "wer"),
                 ci: bool = True) -> list[dict]:
    """One row per (column, group) plus an `overall` row: n, each metric, and its 95% CI."""
    rows = [_row("overall", "all", records, metrics, ci)]
    for col in by:
        groups: dict[str, list[dict]] = defaultdict(list)
        for x in records:
            if x.get(col) is not None:
                groups[str(x[col])].append(x)
        for g in sorted(groups):
            rows.append(_row(col, g, groups[g], metrics, ci))
    for x in records:  # cached sacrebleu statistics are not part of the result
        for m in ("chrf", "bleu"):
            x.pop(f"_{m}_stats", None)
    return rows


def _row(col: str, group: str, recs: list[dict], metrics: tuple[str, ...], ci: bool) -> dict:
    row: dict = {"by": col, "group": group, "n": len(recs)}
    for m in metrics:
        row[m] = score(recs, m)
        if ci:
            row[f"{m}_ci"] = list(bootstrap_ci(recs, m))
    return row


def gaps(rows: list[dict], metrics: tuple[str, ...] = ("cer", "wer")) -> dict[str, dict[str, float]]:
    """Per column and metric: worst minus best group (how unequal the model is)."""
    out: dict[str, dict[str, float]] = {}
    cols = sorted({r["by"] for r in rows if r["by"] != "overall"})
    for col in cols:
        grp = [r for r in rows if r["by"] == col]
        out[col] = {m: max(r[m] for r in grp) - min(r[m] for r in grp) for m in metrics
                    if not any(math.isnan(r[m]) for r in grp)}
    return out
