"""Greedy, beam search and sampling over any step function: (state, last tokens) -> next-token log-probabilities."""

from __future__ import annotations

from collections.abc import Callable

import torch

StepFn = Callable[[dict, torch.Tensor], torch.Tensor]  # (state, last (N,)) -> log-probs (N, V)
ReorderFn = Callable[[dict, torch.Tensor], None]  # keep rows INDEX of the state


def length_penalty(n: int, alpha: float) -> float:
    """GNMT length penalty ((5 + n) / 6) ** alpha: alpha 0 compares raw log-probabilities."""
    return ((5.0 + n) / 6.0) ** alpha


@torch.no_grad()
def greedy(step: StepFn, state: dict, batch: int, bos: int, eos: int, max_len: int) -> list[list[int]]:
    """The most probable next token at every position, until EOS or MAX_LEN; EOS is not returned."""
    last = torch.full((batch,), bos, dtype=torch.long)
    out: list[list[int]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool)
    for _ in range(max_len):
        last = step(state, last).argmax(-1)  # (N,)
        for b in range(batch):
            if not done[b] and int(last[b]) != eos:
                out[b].append(int(last[b]))
        done |= last == eos
        if bool(done.all()):
            break
    return out


@torch.no_grad()
def beam_search(step: StepFn, reorder: ReorderFn, state: dict, batch: int, bos: int, eos: int, max_len: int,
                beam: int, alpha: float = 1.0) -> list[list[int]]:
    """Best hypothesis per sentence by log-probability / length_penalty, keeping BEAM hypotheses alive."""
    return [hyps[0] if hyps else [] for hyps in beam_nbest(step, reorder, state, batch, bos, eos, max_len, beam,
                                                            alpha)]


@torch.no_grad()
def beam_nbest(step: StepFn, reorder: ReorderFn, state: dict, batch: int, bos: int, eos: int, max_len: int,
               beam: int, alpha: float = 1.0) -> list[list[list[int]]]:
    """Every hypothesis a beam search finished, per sentence, best first by log-probability / length_penalty.

    STATE holds BATCH rows and is expanded here to BATCH * BEAM rows (row b*BEAM + k is beam k of sentence b).
    A sentence has at least BEAM hypotheses unless fewer sequences exist (some may end on the same step).
    """
    K = beam
    reorder(state, torch.arange(batch).repeat_interleave(K))
    scores = torch.full((batch, K), float("-inf"))
    scores[:, 0] = 0.0  # all beams start identical: let only the first one expand at step 0
    seqs: list[list[int]] = [[] for _ in range(batch * K)]
    last = torch.full((batch * K,), bos, dtype=torch.long)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = [False] * batch
    for t in range(max_len):
        logp = step(state, last)  # (B*K, V)
        V = logp.size(-1)
        cand = (scores.view(-1, 1) + logp).view(batch, K * V)  # (B, K*V)
        top, idx = cand.topk(min(2 * K, K * V), dim=1)  # (B, 2K): enough to keep K alive after EOS picks
        rows, toks, new_scores = [], [], torch.full((batch, K), float("-inf"))
        for b in range(batch):
            kept = 0
            for s, i in zip(top[b].tolist(), idx[b].tolist(), strict=True):
                k, tok = divmod(i, V)
                src_row = b * K + k
                if s == float("-inf"):
                    break
                if tok == eos:
                    if not done[b]:
                        finished[b].append((s / length_penalty(t + 1, alpha), seqs[src_row]))
                    continue
                if kept < K:
                    rows.append(src_row)
                    toks.append((tok, seqs[src_row]))
                    new_scores[b, kept] = s
                    kept += 1
            while kept < K:  # pad with a dead beam so every sentence keeps K rows
                rows.append(b * K)
                toks.append((eos, seqs[b * K]))
                kept += 1
            if len(finished[b]) >= K:
                done[b] = True
        if all(done):
            break
        for b in range(batch):
            if done[b]:
                new_scores[b] = float("-inf")
        index = torch.tensor(rows)
        reorder(state, index)
        seqs = [prev + [tok] for tok, prev in toks]
        last = torch.tensor([tok for tok, _ in toks])
        scores = new_scores
    out = []
    for b in range(batch):
        hyps = list(finished[b])
        if not hyps:  # nothing ended within MAX_LEN: take the alive beams as they are
            hyps = [(float(scores[b, k]) / length_penalty(len(seqs[b * K + k]), alpha), seqs[b * K + k])
                    for k in range(K) if scores[b, k] > float("-inf")]
        hyps.sort(key=lambda h: -h[0])  # stable: equal scores keep the order they were found in
        out.append([seq for _, seq in hyps])
    return out


@torch.no_grad()
def sample(step: StepFn, reorder: ReorderFn, state: dict, batch: int, bos: int, eos: int, max_len: int, n: int,
           epsilon: float = 0.0, generator: torch.Generator | None = None) -> list[list[list[int]]]:
    """N sequences per sentence drawn from the model, each token from those with probability >= EPSILON.

    Epsilon sampling (Hewitt et al. 2022) cuts the unreliable tail yet keeps the model's spread; candidates drawn
    this way make better minimum-Bayes-risk evidence than a beam's near-duplicates (Freitag et al. 2023).
    """
    reorder(state, torch.arange(batch).repeat_interleave(n))
    last = torch.full((batch * n,), bos, dtype=torch.long)
    out: list[list[int]] = [[] for _ in range(batch * n)]
    done = torch.zeros(batch * n, dtype=torch.bool)
    for _ in range(max_len):
        probs = step(state, last).exp()
        if epsilon > 0:
            # keep the most probable token always, so no row is left with nothing to draw
            keep = (probs >= epsilon) | (probs == probs.max(-1, keepdim=True).values)
            probs = probs * keep
        last = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        for r in (~done).nonzero().flatten().tolist():
            if int(last[r]) != eos:
                out[r].append(int(last[r]))
        done |= last == eos
        if bool(done.all()):
            break
    return [out[b * n:(b + 1) * n] for b in range(batch)]
