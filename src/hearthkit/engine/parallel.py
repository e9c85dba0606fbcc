"""Process group, device and data parallelism (DDP or FSDP2) around a recipe's single-device model."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.nn.parallel import DistributedDataParallel as DDP

from hearthkit.engine.compiling import compile_model
from hearthkit.engine.config import LaunchConfig, TrainConfig


def pick_device() -> torch.device:
    """This worker's device: its local GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


# Test-only: a backend string for the default group, e.g. "cuda:gloo", which binds it to CUDA tensors only as NCCL
# does, so a CPU test catches a CPU tensor sent through it. Never set outside tests.
TEST_BACKEND_ENV = "HEARTH_TEST_BACKEND"
DETERMINISM_MARK = "does not have a deterministic implementation"  # torch's alert text


def deterministic(train: TrainConfig) -> None:
    """Apply train.deterministic; called before CUDA is initialised (cuBLAS reads its workspace setting then)."""
    if not train.deterministic:
        return
    os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"  # the documented setting for deterministic cuBLAS
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False  # autotuning may pick a different algorithm per run


def refusal_of(exc: BaseException) -> str | None:
    """One line for an op that has no deterministic kernel (torch's alert under train.deterministic), else None."""
    text = str(exc)
    if DETERMINISM_MARK not in text:
        return None
    op = text.split(DETERMINISM_MARK)[0].strip().rstrip(",").strip()
    return (f"train.deterministic: {op or 'an operation'} has no deterministic kernel on this device; set "
            "train.deterministic: false (a resumed run then agrees in its loss curve, not bitwise)")


def init_distributed(launch: LaunchConfig, device: torch.device) -> None:
    """Join the torchrun group with a bounded timeout, so a dead peer is an error, not a hang.

    The group starts with launch.warmup_timeout_s (communicators, compilation and autotuning make the first steps
    slow); `end_warmup` lowers it to launch.timeout_s.
    """
    backend = launch.backend if launch.backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    backend = os.environ.get(TEST_BACKEND_ENV) or backend
    if backend == "nccl":
        # NCCL watchdog: abort the communicator (and raise) when a collective outlives the timeout.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    timeout = timedelta(seconds=max(launch.warmup_timeout_s, launch.timeout_s))
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


def end_warmup(launch: LaunchConfig) -> None:
    """After the first steps: collectives of the default group time out after launch.timeout_s from now on."""
    dist.distributed_c10d._set_pg_timeout(timedelta(seconds=launch.timeout_s))


@dataclass(frozen=True)
class SideGroups:
    """CPU (gloo) groups for everything but the model's own collectives, whatever the default group's backend.

    NCCL binds its group to CUDA: a CPU tensor there fails ("No backend type associated with device type cpu").
    Bookkeeping (metrics, flags) runs on `host` with the collective timeout; checkpoints, validation and the end of
    training on `files` and `final`, with timeouts sized for slow shared filesystems.
    """

    host: dist.ProcessGroup
    files: dist.ProcessGroup
    final: dist.ProcessGroup
    checkpoint_timeout_s: int
    final_timeout_s: int

    def barrier(self, group: dist.ProcessGroup, timeout_s: int, what: str) -> None:
        """Wait for every rank on GROUP; a rank missing after TIMEOUT_S is named in one line with WHAT's setting."""
        try:
            dist.monitored_barrier(group=group, timeout=timedelta(seconds=timeout_s))
        except RuntimeError as exc:
            raise RuntimeError(f"{what}: a rank did not arrive within {timeout_s} s ({str(exc).splitlines()[0]})")\
                from None


def side_groups(launch: LaunchConfig) -> SideGroups:
    """Create the gloo side groups (collective: every rank calls it, in the same order)."""
    def gloo(seconds: int) -> dist.ProcessGroup:
        return dist.new_group(backend="gloo", timeout=timedelta(seconds=seconds))

    return SideGroups(gloo(launch.timeout_s), gloo(launch.checkpoint_timeout_s), gloo(launch.final_timeout_s),
                      launch.checkpoint_timeout_s, launch.final_timeout_s)


def use_bf16(train: TrainConfig, device: torch.device) -> bool:
    """bf16 compute: asked for, or `auto` on a GPU."""
    return train.precision == "bf16" or (train.precision == "auto" and device.type == "cuda")


def autocast(train: TrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on GPU (precision auto or bf16); full precision otherwise."""
    if not use_bf16(train, device):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def parallelize(model: nn.Module, train: TrainConfig, device: torch.device,
                dynamic_lengths: bool = True) -> nn.Module:
    """Wrap MODEL for data parallelism (and torch.compile: engine/compiling.py, DYNAMIC_LENGTHS when the data path
    marks lengths dynamic); the returned module is what the loop calls."""
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
        wrapped = compile_model(wrapped, dynamic_lengths)
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
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in sd.items():
        t = v.detach().contiguous()
        # Tied weights (e.g. Whisper's output projection and embedding) come back as one CPU tensor in a world of
        # one, and safetensors refuses shared storage; gathered from several ranks they are separate copies.
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out
