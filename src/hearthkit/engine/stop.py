"""Clean stops: any rank may ask (a signal handler, a hook); the group agrees after the step, checkpoints, exits.

A launcher hooks in with `install(signal.SIGUSR1)` (e.g. before a SLURM time limit) or by calling `request()`.
"""

from __future__ import annotations

import signal

import torch
import torch.distributed as dist

_requested = False


def request(*_args) -> None:
    """Ask the group to stop after the current step (safe inside a signal handler)."""
    global _requested
    _requested = True


def clear() -> None:
    """Forget a request (after a stop was carried out, in a process that trains again)."""
    global _requested
    _requested = False


def requested() -> bool:
    """Whether this rank has been asked to stop."""
    return _requested


def install(signum: int = signal.SIGUSR1) -> None:
    """Turn SIGNUM into a stop request: checkpoint after the current step, then exit cleanly."""
    signal.signal(signum, request)


def should_stop(group: dist.ProcessGroup | None) -> bool:
    """True on every rank when any rank was asked to stop (one tiny all-reduce per step on GROUP, a gloo group:
    the flag is a CPU tensor, so checking it never waits on a GPU stream)."""
    flag = torch.tensor([1 if _requested else 0], dtype=torch.int32)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    return bool(flag.item())
