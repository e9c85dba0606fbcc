"""CTC decoding: greedy, and prefix beam search with optional shallow fusion of a language model.

The LM hook: any callable `scorer(context: str, text: str) -> float` returning the natural-log probability
that TEXT follows CONTEXT (optionally with a `final(context) -> float` end-of-sentence score) can be fused.
Other recipes (e.g. `lm`) register a factory under a name in `SCORERS`; a model config then selects it with
`decode.lm: {kind: plugin, plugin: NAME, path: models/LM}`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch

NEG = -math.inf


class LMScorer(Protocol):
    """What shallow fusion needs from a language model."""

    def __call__(self, context: str, text: str) -> float:
        """log P(TEXT | CONTEXT)."""


# name -> factory(path) -> LMScorer; `register_scorer` adds more.
SCORERS: dict[str, Callable[[Path], LMScorer]] = {}
# Scorers of hearthkit's own recipes, imported only when a config asks for them (torch models load slowly).
BUILTIN = {"lm": "hearthkit.recipes.lm.fusion:load_scorer"}


def scorer_factory(name: str) -> Callable[[Path], LMScorer] | None:
    """The factory registered as NAME (a built-in one is imported on first use), or None."""
    if name not in SCORERS and name in BUILTIN:
        import importlib

        module, attr = BUILTIN[name].split(":")
        SCORERS[name] = getattr(importlib.import_module(module), attr)
    return SCORERS.get(name)


def register_scorer(name: str, factory: Callable[[Path], LMScorer]) -> None:
    """Make a language model usable for shallow fusion as `decode.lm.plugin: NAME`."""
    SCORERS[name] = factory


def _logadd(a: float, b: float) -> float:
    if a == NEG:
        return b
    if b == NEG:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def greedy(logp: torch.Tensor) -> list[int]:
    """Best unit per frame of LOGP (T, V); the tokenizer collapses repeats and blanks."""
    return logp.argmax(-1).tolist()


def prefix_beam_search(logp: torch.Tensor, piece: Callable[[int], str], beam: int = 8,
                       lm: LMScorer | None = None, lm_weight: float = 0.0, bonus: float = 0.0,
                       prune: float = -12.0) -> str:
    """Most probable text under CTC for LOGP (T, V; index 0 blank), optionally fused with LM."""
    return prefix_beam_nbest(logp, piece, beam, 1, lm, lm_weight, bonus, prune)[0][0]


def prefix_beam_nbest(logp: torch.Tensor, piece: Callable[[int], str], beam: int = 8, n: int = 1,
                      lm: LMScorer | None = None, lm_weight: float = 0.0, bonus: float = 0.0,
                      prune: float = -12.0) -> list[tuple[str, float]]:
    """The N best distinct texts under CTC for LOGP (T, V; index 0 blank) with their log scores, best first.

    Prefixes are tuples of unit ids; each keeps the log-probability of ending in blank (pb) and in its last
    unit (pnb). LM and length bonus are added once per emitted unit, the standard shallow-fusion score. The final
    beam is kept (not only its best) so a cascade can hand several readings of the audio to a translator.
    """
    lp = logp.detach().float().cpu().numpy()
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG)}
    fused: dict[tuple[int, ...], float] = {(): 0.0}  # LM + bonus part of each prefix's score
    texts: dict[tuple[int, ...], str] = {(): ""}
    for t in range(lp.shape[0]):
        row = lp[t]
        cand = [int(v) for v in row.argsort()[::-1][:beam + 1] if row[v] > prune or v == 0]
        nxt: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [NEG, NEG])
        for prefix, (pb, pnb) in beams.items():
            total = _logadd(pb, pnb)
            for v in cand:
                p = float(row[v])
                if v == 0:
                    e = nxt[prefix]
                    e[0] = _logadd(e[0], total + p)
                    continue
                last = prefix[-1] if prefix else None
                new = prefix + (v,)
                if new not in fused:
                    text = texts[prefix] + piece(v)
                    texts[new] = text
                    extra = lm_weight * lm(texts[prefix], piece(v)) if lm is not None and lm_weight else 0.0
                    fused[new] = fused[prefix] + extra + bonus
                e = nxt[new]
                # repeating the last unit needs a blank in between; otherwise it extends the same unit
                e[1] = _logadd(e[1], (pb + p) if v == last else (total + p))
                if v == last:
                    s = nxt[prefix]
                    s[1] = _logadd(s[1], pnb + p)
        ranked = sorted(nxt.items(), key=lambda kv: _logadd(*kv[1]) + fused[kv[0]], reverse=True)[:beam]
        beams = {k: (v[0], v[1]) for k, v in ranked}

    def final(k: tuple[int, ...]) -> float:
        end = lm_weight * lm.final(texts[k]) if lm is not None and lm_weight and hasattr(lm, "final") else 0.0
        return _logadd(*beams[k]) + fused[k] + end

    out: dict[str, float] = {}  # prefixes that differ only in spaces read as one text: keep its best score
    for k in sorted(beams, key=final, reverse=True):
        out.setdefault(" ".join(texts[k].split()), final(k))
    return list(out.items())[:n]
