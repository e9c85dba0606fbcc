"""Helpers for the launch tests: an imported workspace, a tiny run config, weight comparison."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import hearth

COLLECTION = "demo-korero"
COMMUNITY = "Te Hapori Tauira (demo community)"


def imported_workspace(root: Path, archive: Path) -> Path:
    """A fresh workspace with the tiny speech archive imported through the real CLI."""
    from hearthkit.workspace import init_workspace

    ws = init_workspace(root).root
    hearth("data", "import", str(archive), ws=ws)
    return ws


def tiny_config(folder: Path, name: str, steps: int = 6, checkpoint_every: int = 3, nproc: int = 2) -> Path:
    """A run config small enough to train in seconds on 2 shared cores."""
    cfg = {
        "name": name,
        "recipe": "asr",
        "request": {"purpose": "language_revitalization", "requester": "launch-test", "collections": [COLLECTION]},
        "split": {"by": "text", "test_fraction": 0.2},
        "model": {"arch": "bigru", "conv_channels": 16, "hidden": 16, "layers": 1, "dropout": 0.1},
        "train": {"steps": steps, "batch_size": 2, "lr": 0.002, "warmup": 2, "checkpoint_every": checkpoint_every,
                  "log_every": 2, "keep_last": 2},
        "launch": {"nproc": nproc, "backend": "gloo"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def final_weights(ws: Path, run: str) -> dict:
    """The final safetensors weights of RUN."""
    return load_file(str(ws / "runs" / run / "final" / "model.safetensors"))


def assert_same_weights(a: dict, b: dict) -> None:
    """Bitwise equality of two state dicts (same keys, dtypes, shapes and bytes)."""
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        # Compare the raw bytes: bitwise, so -0.0 vs 0.0 or NaN payloads would count as different.
        assert a[k].reshape(-1).view(torch.uint8).equal(b[k].reshape(-1).view(torch.uint8)), f"{k} differs"
