"""The training data path: a torch DataLoader of whole micro-batches, read through the governed reader.

Micro-batch K of rank R is a pure function of (train.seed, K, R): the sampler names its items, and every random
draw made while preparing them (speed perturbation, SpecAugment) comes from RNGs seeded with (seed, K, R) for that
batch alone. A batch is therefore the same whichever worker makes it, however many workers there are, and after a
resume; the main process's RNG (dropout) is never drawn from by the data path.

Workers are forked from the trainer and read like it does: only manifest items, through the GovernedReader of the
dataset they inherit (hash verified, sealed items decrypted in the worker's memory, one access-log line per read,
written by the worker itself: O_APPEND keeps the lines of several workers whole). Batches reach the trainer through
shared memory, never a file. The trainer holds no catalog connection, so nothing database-side crosses the fork.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from hearthkit.engine.config import DataConfig
from hearthkit.engine.faults import die_with_parent
from hearthkit.engine.sampler import StepSampler


def batch_seed(seed: int, k: int, rank: int) -> int:
    """The seed of micro-batch K on RANK (a 63-bit mix: nearby (seed, k, rank) give unrelated streams)."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, rank, k]).generate_state(2, np.uint64)[0]) >> 1


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Torch (CPU), numpy and random seeded with SEED inside; the caller's states are restored after."""
    states = torch.get_rng_state(), np.random.get_state(), random.getstate()
    torch.default_generator.manual_seed(seed)  # not torch.manual_seed: that would also reseed CUDA (dropout)
    np.random.seed(seed & 0xFFFFFFFF)
    random.seed(seed)
    try:
        yield
    finally:
        torch.set_rng_state(states[0])
        np.random.set_state(states[1])
        random.setstate(states[2])


def to_device(batch: dict, device: torch.device, compiled: bool) -> dict:
    """BATCH's tensors on DEVICE (asynchronous copies: the loader pins them for a GPU); under torch.compile
    (COMPILED) their length dimensions are marked dynamic first."""
    batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
    if compiled:
        mark_length_dims(batch)
    return batch


def mark_length_dims(batch: dict) -> None:
    """Under torch.compile: mark dimension 1 (frames, samples, tokens: the length) of every batch tensor with two or
    more dimensions as dynamic, so the first graph compiled serves every length. Unmarked, the first step compiles
    for its exact length and the next one recompiles; a dimension the model fixes (e.g. a padded-to-30-s input)
    stays static, as maybe_mark_dynamic allows."""
    for value in batch.values():
        if torch.is_tensor(value) and value.dim() >= 2:
            torch._dynamo.maybe_mark_dynamic(value, 1)


class StepBatches(Dataset):
    """Micro-batch K (index = step x grad_accum + micro) of one rank, collated."""

    def __init__(self, data: Dataset, sampler: StepSampler, collate: Callable[[list], dict], seed: int, rank: int):
        self.data, self.sampler, self.collate, self.seed, self.rank = data, sampler, collate, seed, rank

    def __getitem__(self, k: int) -> dict:
        with seeded(batch_seed(self.seed, k, self.rank)):
            return self.collate([self.data[i] for i in self.sampler.indices(k)])


def _worker_init(worker_id: int) -> None:
    """One thread per data worker (the trainer's threads and the other workers share the cores), killed by the
    kernel with its trainer: a killed run leaves no worker reading items or writing access-log lines."""
    torch.set_num_threads(1)
    die_with_parent()


def resolve_workers(cfg: DataConfig, device: torch.device, nproc: int) -> int:
    """data.workers, with auto resolved: on a GPU up to 4 per rank from the cores this rank may use, one left for
    the training process; on CPU none (the trainer's own threads use the cores; featurisation stays in the step)."""
    if cfg.workers != "auto":
        return cfg.workers
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(4, cores // max(1, nproc) - 1))


def loader(batches: StepBatches, first: int, last: int, cfg: DataConfig, device: torch.device,
           workers: int) -> DataLoader:
    """A DataLoader over micro-batches FIRST..LAST-1 in order (WORKERS processes, CFG.prefetch batches each ahead,
    pinned memory for a GPU as CFG.pin_memory says)."""
    pin = device.type == "cuda" if cfg.pin_memory == "auto" else cfg.pin_memory
    return DataLoader(
        batches, batch_size=None, sampler=range(first, last), num_workers=workers,
        prefetch_factor=cfg.prefetch if workers else None, persistent_workers=workers > 0, pin_memory=pin,
        worker_init_fn=_worker_init if workers else None,
        multiprocessing_context="fork" if workers else None,  # workers inherit the reader and its unwrapped keys
        # The loader draws its workers' base seed from this generator, not from the global RNG: the trainer's
        # dropout stream must not depend on when (or whether) a loader was started, or resume would not be exact.
        generator=torch.Generator().manual_seed(0))
