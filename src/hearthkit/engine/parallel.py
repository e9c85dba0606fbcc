"""Process group, device and data parallelism (DDP or FSDP2) around a recipe's single-device model."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.nn.parallel import DistributedDataParallel as DDP

from hearthkit.engine.config import LaunchConfig, TrainConfig


def pick_device() -> torch.device:
    """This worker's device: its local GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def init_distributed(launch: LaunchConfig, device: torch.device) -> None:
    """Join the torchrun group with a bounded collective timeout, so a dead peer is an error, not a hang."""
    backend = launch.backend if launch.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if backend == "nccl":
        # NCCL watchdog: abort the communicator (and raise) when a collective outlives the timeout.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=launch.timeout_s)
    device_id = device if device.type == "cuda" else None
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        # torchrun's store outlives a restart and still holds the dead attempt's peer addresses, so a restarted
        # group would dial them (connection refused, pytorch#167288): give each attempt its own key prefix.
        base = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                             int(os.environ["WORLD_SIZE"]), is_master=False, timeout=timeout)
        store = dist.PrefixStore(f"/hearthkit/attempt_{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", base)
        dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                world_size=int(os.environ["WORLD_SIZE"]), timeout=timeout, device_id=device_id)
    else:
        dist.init_process_group(backend, timeout=timeout, device_id=device_id)


def use_bf16(train: TrainConfig, device: torch.device) -> bool:
    """bf16 compute: asked for, or `auto` on a GPU."""
    return train.precision == "bf16" or (train.precision == "auto" and device.type == "cuda")


def autocast(train: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (precision auto or bf16); full precision otherwise."""
    if not use_bf16(train, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def parallelize(model: nn.Module, train: TrainConfig, device: torch.device) -> nn.Module:
    """Wrap MODEL for data parallelism; the returned module is what the loop calls."""
    model.to(device)
    if train.parallel == "fsdp2":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(device.type, (dist.get_world_size(),))
        # bf16: gather weights in bf16 (half the traffic), reduce gradients in fp32 (no precision lost in the sum).
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if use_bf16(train, device) else MixedPrecisionPolicy()
        # Shard each block the model names (one all-gather per block), then the root for what is left.
        for block in getattr(model, "fsdp_blocks", lambda: [])():
            fully_shard(block, mesh=mesh, mp_policy=mp)
        fully_shard(model, mesh=mesh, mp_policy=mp)
        wrapped = model
    elif dist.get_world_size() == 1:
        wrapped = model  # nothing to all-reduce: DDP would only copy gradients into buckets and back
    else:
        wrapped = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    if train.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def unwrap(model: nn.Module) -> nn.Module:
    """The recipe's module inside compile and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, DDP) else model


@contextlib.contextmanager
def grad_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on accumulation micro-batches; sync on the last one."""
    inner = getattr(model, "_orig_mod", model)
    if enabled:
        yield
    elif isinstance(inner, DDP):
        with inner.no_sync():
            yield
    elif hasattr(inner, "set_requires_gradient_sync"):  # FSDP2 module
        inner.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            inner.set_requires_gradient_sync(True)
    else:
        yield


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded CPU weights of MODEL (collective: every rank calls it), keyed as the recipe's module names them."""
    sd = get_model_state_dict(unwrap(model), options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().contiguous() for k, v in sd.items()}
