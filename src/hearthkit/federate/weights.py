"""Model weights as the ordered list of arrays Flower carries, and the check every site update must pass."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch


def to_arrays(state: dict[str, torch.Tensor]) -> tuple[list[str], list[np.ndarray]]:
    """Names (sorted) and float32 arrays of STATE: the one order both sides use."""
    names = sorted(state)
    return names, [state[n].detach().cpu().float().numpy() for n in names]


def to_state(names: list[str], arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """The state dict of NAMES and ARRAYS."""
    return {n: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for n, a in zip(names, arrays, strict=True)}


def digest(arrays: list[np.ndarray]) -> str:
    """SHA-256 over the arrays' shapes and bytes: the identity of a global model."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
    return h.hexdigest()


def save(path: Path, names: list[str], arrays: list[np.ndarray]) -> None:
    """Write the weights as safetensors, atomically."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(to_state(names, arrays), str(tmp))
    tmp.replace(path)


def load(path: Path) -> tuple[list[str], list[np.ndarray]]:
    """Names and arrays of a safetensors file written by `save` (or by the engine)."""
    from safetensors.torch import load_file

    return to_arrays(load_file(str(path)))


def check_update(names: list[str], current: list[np.ndarray], update: list[np.ndarray]) -> str | None:
    """Why UPDATE cannot be aggregated into CURRENT (count, shape, type, non-finite values), or None when it can."""
    if len(update) != len(current):
        return f"{len(update)} tensors, expected {len(current)}"
    for name, cur, new in zip(names, current, update, strict=True):
        if not isinstance(new, np.ndarray) or new.dtype.kind != "f":
            return f"tensor {name}: not floating-point numbers ({getattr(new, 'dtype', type(new).__name__)})"
        if new.shape != cur.shape:
            return f"tensor {name}: shape {tuple(new.shape)}, expected {tuple(cur.shape)}"
        if not np.isfinite(new).all():
            return f"tensor {name}: holds NaN or infinite values"
    return None
