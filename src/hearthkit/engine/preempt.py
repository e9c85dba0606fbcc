"""Preemption: a signal (SLURM's USR1 before the time limit, Kubernetes' TERM) asks the workers to checkpoint and exit.

The signal handler only sets a flag. The trainer's `StopVote` carries it (with stop.py's request) to every rank: after
each step each rank casts its flags in an asynchronous all-reduce on a gloo group and reads the result of the vote cast
a step earlier, which has long arrived; all ranks so agree on the same step to stop at (one step after the request)
without a blocking collective per step. The trainer then writes a checkpoint and calls `exit_for_requeue()`.
`should_stop()` is the blocking form, for callers outside the training loop.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

import torch
import torch.distributed as dist

from hearthkit.engine import stop

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


class StopVote:
    """The group's decision to stop (stop.request or the preemption signal), one asynchronous vote per step.

    `cast()` starts an all-reduce (MAX) of this rank's two flags on a gloo group and returns at once; `decide()`
    waits on the previous vote (in flight for a whole step, so already done), casts the next, and returns the
    decision. Every rank calls both at the same steps, so every rank reads the same decision at the same step.
    """

    def __init__(self, watch: PreemptWatch, group: dist.ProcessGroup | None):
        self.watch, self.group = watch, group
        self._pending: tuple[torch.Tensor, dist.Work] | None = None

    def cast(self) -> None:
        """Send this rank's flags (stop requested, preemption signal received) without waiting."""
        flags = torch.tensor([int(stop.requested()), int(self.watch.received)], dtype=torch.int32)
        self._pending = (flags, dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=self.group, async_op=True))

    def drain(self) -> tuple[bool, bool]:
        """Wait for the vote in flight, if any: (stop, preempted) as any rank asked when it was cast."""
        if self._pending is None:
            return False, False
        flags, work = self._pending
        self._pending = None
        work.wait()
        preempted = bool(flags[1])
        return bool(flags[0]) or preempted, preempted

    def decide(self) -> tuple[bool, bool]:
        """(stop, preempted) as the group voted a step ago; this step's vote is cast for the next decision."""
        decision = self.drain()
        self.cast()
        return decision
