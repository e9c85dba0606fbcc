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
from torch.distributed.checkpoint import DefaultSavePlanner
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.stateful import Stateful
from torch.optim.lr_scheduler import LRScheduler

from hearthkit.engine.parallel import SideGroups
from hearthkit.errors import HearthError

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


def write_durable(path: Path, data: bytes) -> None:
    """Write PATH whole or not at all, and durably: a temporary file, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)  # the rename itself reaches the disk (and the server, on NFS) only with this


def _group(sides: SideGroups | None) -> dist.ProcessGroup | None:
    return sides.files if sides is not None else None


def _barrier(sides: SideGroups | None, what: str) -> None:
    if sides is None:
        dist.barrier()
    else:
        sides.barrier(sides.files, sides.checkpoint_timeout_s, f"{what} (launch.checkpoint_timeout_s)")


def save(root: Path, step: int, state: ModelAndOptimizer, rank_state: dict, keep_last: int,
         sides: SideGroups | None = None) -> Path:
    """Write checkpoint STEP collectively; it appears under its final name only once complete and on disk.

    With SIDES the coordination runs on its gloo `files` group, under launch.checkpoint_timeout_s."""
    rank = dist.get_rank()
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f"{TMP}{PREFIX}{step:08d}"
    if rank == 0:
        for stale in root.glob(f"{TMP}*") if root.is_dir() else []:  # left by a crash mid-write
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier(sides, f"checkpoint {step}: folder created")
    # Replicated tensors are written from rank 0: by default DCP picks whichever rank has least to write, and DDP
    # leaves BatchNorm running statistics different on each rank, so a resume could start from rank 1's (not exact).
    dcp.save({"train": state}, checkpoint_id=str(tmp), process_group=_group(sides),  # its writer fsyncs the shards
             planner=DefaultSavePlanner(dedup_save_to_lowest_rank=True))
    with (tmp / f"rank{rank}.pt").open("wb") as f:
        torch.save(rank_state, f)
        f.flush()
        os.fsync(f.fileno())
    _pause_if_testing(step)
    _barrier(sides, f"checkpoint {step}: shards written")
    if rank == 0:
        write_durable(tmp / "meta.json", json.dumps({"step": step, "world_size": dist.get_world_size(),
                                                     "time": time.time(), "data": rank_state.get("data")}).encode())
        # The rename is the commit point: a crash before it leaves only a .tmp folder, never a half checkpoint.
        os.replace(tmp, final)
        _fsync_dir(root)
        for old in checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier(sides, f"checkpoint {step}: committed")
    return final


def data_position(sampler, grad_accum: int) -> dict:
    """What orders the data besides the step: a resume with other values trains on other batches."""
    return {"seed": sampler.seed, "batch_size": sampler.bs, "world": sampler.world, "bucket": sampler.bucket,
            "grad_accum": grad_accum}


def loop_state(step: int, sched: LRScheduler, sampler, grad_accum: int = 1) -> dict:
    """This rank's loop state after STEP: scheduler, RNG states, data position (the step, and what orders data)."""
    return {"step": step, "scheduler": sched.state_dict(), "rng": rng_state(),
            "data": data_position(sampler, grad_accum)}


CHANGEABLE = ("seed", "batch_size", "grad_accum", "bucket")


def changes(saved: dict | None, now: dict) -> dict[str, tuple]:
    """Fields of the data position that differ between a checkpoint's (SAVED) and this run's (NOW): {field: (old,
    new)}. A field the checkpoint did not record (older checkpoints) is not compared."""
    saved = saved or {}
    return {k: (saved[k], now[k]) for k in CHANGEABLE if k in saved and k in now and saved[k] != now[k]}


def check_changes(path: Path, found: dict[str, tuple], allowed: list[str]) -> None:
    """Refuse a resume whose data position changed, unless train.allow_change names each changed field."""
    for k, (old, new) in found.items():
        if k not in allowed:
            raise HearthError(f"{path.name}: train.{k} is {new} but the run was trained with {old}, so the data "
                              f"order and the weights would silently differ; resume with train.{k}: {old}, or "
                              f"accept it with --set 'train.allow_change=[{k}]' (recorded in the run)")


def choose(root: Path, sides: SideGroups | None = None) -> Path | None:
    """The checkpoint every rank resumes from: rank 0's newest, broadcast (ranks may list a shared folder
    differently: NFS and Lustre cache directory listings per node)."""
    newest = latest(root) if dist.get_rank() == 0 else None
    pick = [newest.name if newest is not None else None]
    dist.broadcast_object_list(pick, src=0, group=_group(sides))
    if pick[0] is None:
        return None
    path = root / pick[0]
    if not (path / "meta.json").is_file():
        raise RuntimeError(f"rank {dist.get_rank()} does not see checkpoint {path} that rank 0 resumes from: every "
                           "node must mount the same workspace (a shared filesystem)")
    return path


def resume(root: Path, state: ModelAndOptimizer, sched: LRScheduler, sides: SideGroups | None = None,
           now: dict | None = None, allowed: list[str] | None = None) -> tuple[int, Path | None, dict]:
    """Load the checkpoint rank 0 chooses under ROOT, if any, into STATE, SCHED and the RNGs; return (step, its
    path, the data-position changes train.allow_change accepted). A change not allowed is refused before loading."""
    last = choose(root, sides)
    if last is None:
        return 0, None, {}
    found = changes(json.loads((last / "meta.json").read_text()).get("data"), now or {})
    check_changes(last, found, allowed or [])
    loop = load(last, state, sides)
    sched.load_state_dict(loop["scheduler"])
    set_rng_state(loop["rng"])
    return loop["step"], last, found


def write_safetensors(weights: dict[str, torch.Tensor], path: Path) -> None:
    """Write final weights to PATH atomically (a reader never sees a half file)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(weights, str(tmp))
    with tmp.open("rb+") as f:  # safetensors closes the file without fsync
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load(path: Path, state: ModelAndOptimizer, sides: SideGroups | None = None) -> dict:
    """Load checkpoint PATH into STATE; return this rank's loop state."""
    meta = json.loads((path / "meta.json").read_text())
    if meta["world_size"] != dist.get_world_size():
        raise RuntimeError(f"{path} was written by {meta['world_size']} workers, this run has "
                           f"{dist.get_world_size()}; resume with launch.nproc={meta['world_size']}")
    dcp.load({"train": state}, checkpoint_id=str(path), process_group=_group(sides))
    with (path / f"rank{dist.get_rank()}.pt").open("rb") as f:
        return torch.load(f, weights_only=False)


def load_average(paths: list[Path], model: nn.Module, sides: SideGroups | None = None) -> None:
    """Set MODEL's weights to the mean of those saved in checkpoints PATHS (collective: every rank calls it)."""
    total: dict[str, torch.Tensor] = {}
    for p in paths:
        sd = {k: v.detach().clone() for k, v in get_model_state_dict(model).items()}
        # Model entries only, not the optimizer's.
        dcp.load({"train": {"model": sd}}, checkpoint_id=str(p), process_group=_group(sides))
        for k, v in sd.items():
            total[k] = total[k] + v.float() if k in total else v.float().clone()
    ref = get_model_state_dict(model)
    set_model_state_dict(model, {k: (v / len(paths)).to(ref[k].dtype) for k, v in total.items()})
