"""DCP checkpoints written atomically: model and optimizer (sharded), plus each rank's loop state.

Layout of one checkpoint, `checkpoints/step_00000200/`:
  *.distcp, .metadata   model + optimizer, written by torch.distributed.checkpoint (sharded under FSDP2)
  rank{r}.pt            rank r's loop state: step, scheduler, RNG states, data position
  meta.json             written last; the folder is renamed from `.tmp-step_…` to its final name only after it
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful
from torch.optim.lr_scheduler import LRScheduler

PREFIX = "step_"
TMP = ".tmp-"
# Test-only: "STEP:SECONDS" pauses every rank inside the write window of checkpoint STEP (shards written, not yet
# committed), so a test can kill the run mid-write. Never set outside tests.
PAUSE_ENV = "HEARTH_TEST_CHECKPOINT_PAUSE"


class ModelAndOptimizer(Stateful):
    """Model and optimizer state as DCP wants it: sharded tensors stay sharded, keys are FQNs."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer):
        self.model, self.optimizer = model, optimizer

    def state_dict(self) -> dict:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        return {"model": model_sd, "optim": optim_sd}

    def load_state_dict(self, state: dict) -> None:
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])


def rng_state() -> dict:
    """Every RNG a step may draw from (augmentation, dropout, shuffles) on this rank."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ROOT (those with meta.json), oldest first."""
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "meta.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(PREFIX):]))


def latest(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = checkpoints(root)
    return found[-1] if found else None


def _pause_if_testing(step: int) -> None:
    spec = os.environ.get(PAUSE_ENV)
    if spec and int(spec.split(":")[0]) == step:
        time.sleep(float(spec.split(":")[1]))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(root: Path, step: int, state: ModelAndOptimizer, rank_state: dict, keep_last: int) -> Path:
    """Write checkpoint STEP collectively; it appears under its final name only once complete."""
    rank = dist.get_rank()
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{TMP}{PREFIX}{step:08d}"
    if rank == 0:
        for stale in root.glob(f"{TMP}*") if root.is_dir() else []:  # left by a crash mid-write
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    dcp.save({"train": state}, checkpoint_id=str(tmp))
    with (tmp / f"rank{rank}.pt").open("wb") as f:
        torch.save(rank_state, f)
        f.flush()
        os.fsync(f.fileno())
    _pause_if_testing(step)
    dist.barrier()
    if rank == 0:
        (tmp / "meta.json").write_text(json.dumps({"step": step, "world_size": dist.get_world_size(),
                                                   "time": time.time()}))
        _fsync_dir(tmp)
        # The rename is the commit point: a crash before it leaves only a .tmp folder, never a half checkpoint.
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def loop_state(step: int, sched: LRScheduler, sampler) -> dict:
    """This rank's loop state after STEP: scheduler, RNG states, data position (the step, and what orders data)."""
    return {"step": step, "scheduler": sched.state_dict(), "rng": rng_state(),
            "data": {"seed": sampler.seed, "batch_size": sampler.bs, "world": sampler.world,
                     "bucket": sampler.bucket}}


def resume(root: Path, state: ModelAndOptimizer, sched: LRScheduler) -> tuple[int, Path | None]:
    """Load the latest checkpoint under ROOT, if any, into STATE, SCHED and the RNGs; return (step, its path)."""
    last = latest(root)
    if last is None:
        return 0, None
    loop = load(last, state)
    sched.load_state_dict(loop["scheduler"])
    set_rng_state(loop["rng"])
    return loop["step"], last


def write_safetensors(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Write final weights to PATH atomically (a reader never sees a half file)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(weights, str(tmp))
    os.replace(tmp, path)


def load(path: Path, state: ModelAndOptimizer) -> dict:
    """Load checkpoint PATH into STATE; return this rank's loop state."""
    meta = json.loads((path / "meta.json").read_text())
    if meta["world_size"] != dist.get_world_size():
        raise RuntimeError(f"{path} was written by {meta['world_size']} workers, this run has "
                           f"{dist.get_world_size()}; resume with launch.nproc={meta['world_size']}")
    dcp.load({"train": state}, checkpoint_id=str(path))
    with (path / f"rank{dist.get_rank()}.pt").open("rb") as f:
        return torch.load(f, weights_only=False)


def load_average(paths: list[Path], model: nn.Module) -> None:
    """Set MODEL's weights to the mean of those saved in checkpoints PATHS (collective: every rank calls it)."""
    total: dict[str, torch.Tensor] = {}
    for p in paths:
        sd = {k: v.detach().clone() for k, v in get_model_state_dict(model).items()}
        dcp.load({"train": {"model": sd}}, checkpoint_id=str(p))  # model entries only, not the optimizer's
        for k, v in sd.items():
            total[k] = total[k] + v.float() if k in total else v.float().clone()
    ref = get_model_state_dict(model)
    set_model_state_dict(model, {k: (v / len(paths)).to(ref[k].dtype) for k, v in total.items()})
