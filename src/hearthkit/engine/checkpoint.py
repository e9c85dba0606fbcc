"""DCP checkpoints written atomically: model, optimizer and per-rank state (step, RNG, scheduler)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_state_dict

PREFIX = "step_"


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


def save(root: Path, step: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer, extra: dict,
         keep_last: int) -> Path:
    """Write checkpoint STEP collectively; it appears under its final name only once complete."""
    rank = dist.get_rank()
    final = root / f"{PREFIX}{step:08d}"
    tmp = root / f".tmp-{PREFIX}{step:08d}"
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save(extra, tmp / f"extra_rank{rank}.pt")
    dist.barrier()
    if rank == 0:
        meta = tmp / "meta.json"
        meta.write_text(json.dumps({"step": step, "world_size": dist.get_world_size()}))
        # The rename is the commit point: a crash before it leaves only a .tmp folder, never a half checkpoint.
        os.replace(tmp, final)
        fd = os.open(root, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
        for old in checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    dist.barrier()
    return final


def load(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load checkpoint PATH into MODEL and OPTIMIZER; return this rank's extra state."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(path))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    mine = path / f"extra_rank{dist.get_rank()}.pt"
    return torch.load(mine if mine.exists() else path / "extra_rank0.pt", weights_only=False)


def average_weights(paths: list[Path], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Mean of the model weights saved in checkpoints PATHS (collective: every rank calls it)."""
    total: dict[str, torch.Tensor] = {}
    for p in paths:
        sd = {k: v.detach().clone() for k, v in get_model_state_dict(model).items()}
        state = {"model": sd}
        dcp.load(state, checkpoint_id=str(p))  # model entries only; the optimizer state is not needed
        for k, v in state["model"].items():
            total[k] = total[k] + v.float() if k in total else v.float().clone()
    ref = get_model_state_dict(model)
    return {k: (v / len(paths)).to(ref[k].dtype) for k, v in total.items()}
