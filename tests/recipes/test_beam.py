"""Beam search, n-best and sampling on a logit table where greedy is provably suboptimal."""

from __future__ import annotations

import math

import torch

from hearthkit.recipes.mt.beam import beam_nbest, beam_search, greedy, sample

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


def test_nbest_lists_every_finished_hypothesis_best_first():
    nbest = beam_nbest(step, reorder, {}, 2, BOS, EOS, max_len=10, beam=3, alpha=0.0)
    assert nbest[0] == nbest[1]
    assert nbest[0][0] == beam_search(step, reorder, {}, 1, BOS, EOS, max_len=10, beam=3, alpha=0.0)[0] == [B]
    probs = [seq_prob(s) for s in nbest[0]]
    assert probs == sorted(probs, reverse=True) and len(nbest[0]) >= 3
    assert {tuple(s) for s in nbest[0][:3]} == {(B,), (A, C), (A, D)}  # 0.36, 0.30, 0.18: the three most probable


def test_epsilon_sampling_follows_the_model_and_never_draws_below_epsilon():
    gen = torch.Generator().manual_seed(0)
    draws = sample(step, reorder, {}, 1, BOS, EOS, max_len=10, n=4000, epsilon=0.25, generator=gen)[0]
    seen = {tuple(s) for s in draws}
    # Below 0.25 and never drawn: EOS right after A (0.2), C after B (0.1).
    assert seen == {(A, C), (A, D), (B,)}
    # Renormalised over what is kept: P(A first) = 0.6; P(A C | A) = 0.5 / 0.8.
    assert abs(sum(s[0] == A for s in draws) / 4000 - 0.6) < 0.03
    assert abs(sum(s == [A, C] for s in draws) / sum(s[0] == A for s in draws) - 0.625) < 0.03
    free = sample(step, reorder, {}, 1, BOS, EOS, max_len=10, n=4000, epsilon=0.0,
                  generator=torch.Generator().manual_seed(0))[0]
    assert [A] in free and [B, C] in free  # without the cut the tail is drawn too
    again = sample(step, reorder, {}, 1, BOS, EOS, max_len=10, n=4000, epsilon=0.25,
                   generator=torch.Generator().manual_seed(0))[0]
    assert again == draws  # a seeded generator repeats itself
