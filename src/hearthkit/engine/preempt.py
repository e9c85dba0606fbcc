"""Preemption: a signal (SLURM's USR1 before the time limit, Kubernetes' TERM) asks the workers to checkpoint and exit.

The signal handler only sets a flag. After each step every rank calls `should_stop()`, a one-integer all-reduce, so
all ranks agree on the same step to stop at; the trainer then writes a checkpoint and calls `exit_for_requeue()`.
Without HEARTH_PREEMPT_SIGNAL in the environment nothing is installed and `should_stop()` costs nothing.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

import torch
import torch.distributed as dist

ENV = "HEARTH_PREEMPT_SIGNAL"
EXIT_CODE = 75  # EX_TEMPFAIL: "try again later"; the batch script requeues the job and it resumes


class PreemptWatch:
    """A flag set by a signal, agreed on by all ranks at step boundaries."""

    def __init__(self, signame: str | None):
        self.signame = signame
        self.received = False
        if signame:
            try:
                signal.signal(getattr(signal, signame), self._on_signal)
            except (AttributeError, ValueError, TypeError):
                raise SystemExit(f"{ENV}={signame!r}: not a signal name this system knows (e.g. SIGUSR1)") from None

    @classmethod
    def from_env(cls) -> PreemptWatch:
        """Watch the signal named by $HEARTH_PREEMPT_SIGNAL (set by the generated SLURM/Kubernetes jobs), or none."""
        return cls(os.environ.get(ENV) or None)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.received = True  # only a flag: the step in flight finishes normally

    def should_stop(self, group: dist.ProcessGroup | None = None) -> bool:
        """Collective: True on every rank once any rank got the signal. Call once per step on all ranks; GROUP is a
        gloo group (the flag is a CPU tensor: no GPU sync per step)."""
        if self.signame is None:
            return False
        flag = torch.tensor([int(self.received)], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
        return bool(flag.item())

    def exit_for_requeue(self, rank: int, step: int) -> NoReturn:
        """Leave the process group and exit with EXIT_CODE, after the caller wrote the checkpoint of STEP."""
        if rank == 0:
            print(f"preempted ({self.signame}): checkpoint at step {step} written; exiting for requeue", flush=True)
        dist.destroy_process_group()
        sys.exit(EXIT_CODE)
