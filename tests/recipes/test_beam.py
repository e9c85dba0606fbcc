"""Beam search against greedy on a logit table where greedy is provably suboptimal."""

from __future__ import annotations

import math

import torch

from hearthkit.recipes.mt.beam import beam_search, greedy

BOS, EOS, A, B, C, D = 0, 1, 2, 3, 4, 5
V = 6
# P(next | last token). Greedy takes A (0.6), then C (0.5), then EOS: 0.6*0.5*1.0 = 0.30.
# The best sequence is B EOS: 0.4 * 0.9 = 0.36, which greedy never reaches.
TABLE = {BOS: {A: 0.6, B: 0.4}, A: {C: 0.5, D: 0.3, EOS: 0.2}, B: {EOS: 0.9, C: 0.1}, C: {EOS: 1.0}, D: {EOS: 1.0}}


def step(state: dict, last: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the next token, looked up in TABLE by the last token (the state counts calls)."""
    state["calls"] = state.get("calls", 0) + 1
    out = torch.full((len(last), V), float("-inf"))
    for i, tok in enumerate(last.tolist()):
        for nxt, p in TABLE.get(tok, {EOS: 1.0}).items():
            out[i, nxt] = math.log(p)
    return out


def reorder(state: dict, index: torch.Tensor) -> None:
    state["rows"] = index.tolist()


def seq_prob(seq: list[int]) -> float:
    p, last = 1.0, BOS
    for tok in seq + [EOS]:
        p *= TABLE.get(last, {EOS: 1.0}).get(tok, 0.0)
        last = tok
    return p


def test_greedy_is_suboptimal_and_beam_finds_the_best_sequence():
    g = greedy(step, {}, 2, BOS, EOS, max_len=10)
    b = beam_search(step, reorder, {}, 2, BOS, EOS, max_len=10, beam=2, alpha=0.0)
    assert g == [[A, C], [A, C]]
    assert b == [[B], [B]]
    assert seq_prob(b[0]) > seq_prob(g[0])
    assert math.isclose(seq_prob(b[0]), 0.36) and math.isclose(seq_prob(g[0]), 0.30)


def test_beam_of_one_equals_greedy():
    assert beam_search(step, reorder, {}, 1, BOS, EOS, max_len=10, beam=1, alpha=0.0) == \
        greedy(step, {}, 1, BOS, EOS, max_len=10)


def test_length_penalty_can_prefer_the_longer_hypothesis():
    # Scores: B EOS = log 0.36 = -1.02 (length 2), A C EOS = log 0.30 = -1.20 (length 3).
    # With alpha 2: -1.02/((5+2)/6)^2 = -0.75 vs -1.20/((5+3)/6)^2 = -0.68: the longer one wins.
    assert beam_search(step, reorder, {}, 1, BOS, EOS, max_len=10, beam=3, alpha=2.0)[0] == [A, C]
    assert beam_search(step, reorder, {}, 1, BOS, EOS, max_len=10, beam=3, alpha=0.0)[0] == [B]
