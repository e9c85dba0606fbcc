"""Deterministic batches as a pure function of (seed, step, rank): the loader position is the step."""

from __future__ import annotations

import torch


class StepSampler:
    """Each epoch is a seeded permutation; step S on rank R takes its own slice of it."""

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int):
        if n == 0:
            raise ValueError("no training items: the manifest includes nothing to train on")
        self.n, self.bs, self.rank, self.world, self.seed = n, batch_size, rank, world_size, seed
        self.global_bs = batch_size * world_size
        self.steps_per_epoch = max(1, n // self.global_bs)

    def indices(self, step: int) -> list[int]:
        """Item indices of STEP for this rank."""
        epoch, k = divmod(step, self.steps_per_epoch)
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        if self.n < self.global_bs:  # tiny data: repeat the permutation so every rank gets a full batch
            perm = perm.repeat(self.global_bs // self.n + 1)
        start = k * self.global_bs + self.rank * self.bs
        return perm[start:start + self.bs].tolist()
