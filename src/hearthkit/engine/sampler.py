"""Deterministic batches as a pure function of (seed, step, rank): the loader position is the step."""

from __future__ import annotations

import torch


class StepSampler:
    """Each epoch is a seeded permutation; step S on rank R takes its own slice of it.

    With LENGTHS and BUCKET > 0, each window of BUCKET global batches of the permutation is sorted by item
    length before it is cut into batches, and the batches of the epoch are then shuffled: batches of alike
    lengths carry little padding (variable-length audio pads ~30-40% otherwise), and ranks take interleaved
    items of the same sorted batch, so no DDP worker waits on a peer with longer items.
    """

    def __init__(self, n: int, batch_size: int, rank: int, world_size: int, seed: int,
                 lengths: list[float] | None = None, bucket: int = 0):
        if n == 0:
            raise ValueError("no training items: the manifest includes nothing to train on")
        if bucket and (lengths is None or len(lengths) != n):
            raise ValueError("length bucketing needs one length per item")
        self.n, self.bs, self.rank, self.world, self.seed = n, batch_size, rank, world_size, seed
        self.lengths, self.bucket = lengths, bucket
        self.global_bs = batch_size * world_size
        self.steps_per_epoch = max(1, n // self.global_bs)
        self._epoch: tuple[int, list[list[int]]] | None = None  # the batches of the epoch last asked for

    def _batches(self, epoch: int) -> list[list[int]]:
        """The global batches of EPOCH (each global_bs item indices)."""
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(self.n, generator=g)
        if self.n < self.global_bs:  # tiny data: repeat the permutation so every rank gets a full batch
            perm = perm.repeat(self.global_bs // self.n + 1)
        perm = perm.tolist()
        used = self.steps_per_epoch * self.global_bs
        if not self.bucket:
            return [perm[k:k + self.global_bs] for k in range(0, used, self.global_bs)]
        window = self.global_bs * self.bucket
        batches = []
        for w in range(0, used, window):
            chunk = sorted(perm[w:min(w + window, used)], key=lambda i: (self.lengths[i], i))
            batches += [chunk[k:k + self.global_bs] for k in range(0, len(chunk), self.global_bs)]
        order = torch.randperm(len(batches), generator=g).tolist()
        return [batches[b] for b in order]

    def indices(self, step: int) -> list[int]:
        """Item indices of STEP for this rank."""
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, self._batches(epoch))
        batch = self._epoch[1][k]
        if self.bucket:
            return batch[self.rank::self.world]  # interleaved: every rank gets alike lengths
        return batch[self.rank * self.bs:(self.rank + 1) * self.bs]
