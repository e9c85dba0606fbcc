"""Decoding for speech translation: CTC n-best transcripts, expected-chrF choice among weighted candidates, and
beam/MBR search of the end-to-end model."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hearthkit.recipes.asr.decode import prefix_beam_nbest
from hearthkit.recipes.mt.beam import beam_nbest, beam_search, greedy
from hearthkit.recipes.mt.mbr import chrf, mbr_pick, ngrams
from hearthkit.recipes.mt.model import MTConfig
from hearthkit.recipes.sentencepiece_vocab import BOS, EOS, SentencePieceVocab


def ctc_nbest(logp: torch.Tensor, piece: Callable[[int], str], beam: int = 8, n: int = 1, lm=None,
              lm_weight: float = 0.0, bonus: float = 0.0, prune: float = -12.0) -> list[tuple[str, float]]:
    """The N best distinct transcripts of LOGP (T, U; 0 blank) with their log scores, best first: the asr
    recipe's prefix beam search (same scores, same shallow fusion), keeping its final beam."""
    return prefix_beam_nbest(logp, piece, beam, n, lm, lm_weight, bonus, prune)


def expected_chrf_pick(candidates: list[str], weights: list[float], beta: float = 2.0) -> int:
    """Index of the candidate with the highest expected chrF against the others, each weighted by WEIGHTS.

    Minimum Bayes risk over a cascade: the weights are the asr posterior of the transcript each candidate
    translates (softmax of n-best scores), so a translation that many likely readings agree on wins. Ties go
    to the earliest (the best transcript's translation).
    """
    if len(candidates) <= 1:
        return 0
    grams = [ngrams(c) for c in candidates]
    utility = [sum(w * chrf(grams[i], grams[j], beta) for j, w in enumerate(weights)) for i in range(len(candidates))]
    return max(range(len(candidates)), key=lambda i: (utility[i], -i))


def posterior(scores: list[float]) -> list[float]:
    """Softmax of log SCORES (an n-best's share of the probability among its members)."""
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    return [x / sum(e) for x in e]


@torch.no_grad()
def e2e_translate(model: nn.Module, tcfg: MTConfig, vocab: SentencePieceVocab, feats: list[torch.Tensor],
                  progress=None) -> list[str]:
    """Translations of feature matrices by the end-to-end model: beam search (1 greedy), MBR when tcfg.mbr."""
    model.eval()
    order = sorted(range(len(feats)), key=lambda i: len(feats[i]))  # similar lengths share a batch
    out = [""] * len(feats)
    for b in range(0, len(order), tcfg.eval_batch):
        idx = order[b:b + tcfg.eval_batch]
        x = nn.utils.rnn.pad_sequence([feats[i] for i in idx], batch_first=True)
        state = model.start(x, torch.tensor([len(feats[i]) for i in idx]))
        max_len = tcfg.max_tokens
        if tcfg.mbr > 0:
            nbest = beam_nbest(model.step, model.reorder, state, len(idx), BOS, EOS, max_len,
                               max(tcfg.beam, tcfg.mbr), tcfg.length_penalty)
            for i, hyps in zip(idx, nbest, strict=True):
                texts = [vocab.decode(h) for h in hyps[:tcfg.mbr]]
                out[i] = texts[mbr_pick(texts, tcfg.mbr_beta)] if texts else ""
        else:
            if tcfg.beam == 1:
                ids = greedy(model.step, state, len(idx), BOS, EOS, max_len)
            else:
                ids = beam_search(model.step, model.reorder, state, len(idx), BOS, EOS, max_len, tcfg.beam,
                                  tcfg.length_penalty)
            for i, seq in zip(idx, ids, strict=True):
                out[i] = vocab.decode(seq)
        if progress:
            progress(min(b + tcfg.eval_batch, len(order)), len(order))
    return out
