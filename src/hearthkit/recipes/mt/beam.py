"""Greedy and beam search over any step function: (state, last tokens) -> log-probabilities of the next token."""

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
    """Best hypothesis per sentence by log-probability / length_penalty, keeping BEAM hypotheses alive.

    STATE holds BATCH rows and is expanded here to BATCH * BEAM rows (row b*BEAM + k is beam k of sentence b).
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
        out.append(max(hyps, key=lambda h: h[0])[1] if hyps else [])
    return out
