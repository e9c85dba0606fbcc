"""Replicated tensors that differ between ranks (DDP's BatchNorm running statistics) are saved from rank 0.

Two real gloo ranks (spawned processes): each gives its BatchNorm buffers its own values, as DDP leaves them after
each rank's forward on its own batch; the checkpoint is written collectively and read back on both ranks.
DCP's default picks, per replicated tensor, whichever rank has least to write, so some buffers came from rank 1
and an interrupted run resumed from a mix (not bitwise the uninterrupted run).
"""

from __future__ import annotations

import json
import multiprocessing
import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from hearthkit.engine import checkpoint


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    layers = []
    for _ in range(6):
        layers += [torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4)]
    return torch.nn.Sequential(*layers)


def _rank(rank: int, root: str, store: str, out: str) -> None:
    """Save with rank-specific buffers, load into a fresh model, report what each rank got."""
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2,
                            timeout=timedelta(seconds=60))
    model = _model()
    with torch.no_grad():
        for buf in model.buffers():
            if buf.is_floating_point():
                buf.fill_(float(rank + 1))  # this rank's own running statistics
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    checkpoint.save(Path(root), 1, checkpoint.ModelAndOptimizer(model, opt), {"step": 1}, 2)
    fresh = _model()
    checkpoint.load(Path(root) / "step_00000001", checkpoint.ModelAndOptimizer(fresh, torch.optim.SGD(
        fresh.parameters(), lr=0.1)))
    got = sorted({float(b.flatten()[0]) for b in fresh.buffers() if b.is_floating_point()})
    Path(out, f"rank{rank}.json").write_text(json.dumps(got))
    dist.destroy_process_group()
    os._exit(0)


def test_replicated_buffers_that_differ_between_ranks_are_saved_from_rank_0(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_rank, args=(r, str(tmp_path / "ckpt"), str(tmp_path / "store"), str(tmp_path)))
             for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        if p.is_alive():
            p.kill()
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert got == [[1.0], [1.0]]  # every buffer is rank 0's on both ranks
