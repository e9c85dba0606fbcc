"""CER/WER (jiwer) or pixel metrics, overall and per group, with bootstrap intervals and the best-worst gap."""

from __future__ import annotations

import random
from collections import defaultdict

import jiwer

from hearthkit.evaluate.pixel import METRICS as PIXEL_METRICS


def _rate(refs: list[str], hyps: list[str], metric: str) -> float:
    """Corpus-level error rate: total edits over total reference length (jiwer)."""
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r]
    if not pairs:
        return float("nan")
    r, h = [p[0] for p in pairs], [p[1] for p in pairs]
    return float(jiwer.cer(r, h) if metric == "cer" else jiwer.wer(r, h))


def score(records: list[dict], metric: str) -> float:
    """METRIC over RECORDS: cer/wer from reference/hypothesis fields, pixel metrics from summed counts."""
    if metric in PIXEL_METRICS:
        return PIXEL_METRICS[metric](records)
    return _rate([x["reference"] for x in records], [x["hypothesis"] for x in records], metric)


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
        out[col] = {m: max(r[m] for r in grp) - min(r[m] for r in grp) for m in metrics}
    return out
