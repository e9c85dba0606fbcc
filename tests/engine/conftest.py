"""Engine fixtures: one workspace holding the tiny speech archive, and a tiny asr run config writer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

# A model small enough that a step takes milliseconds: start-up dominates, and that is what the tests pay for.
TINY_MODEL = {"arch": "bigru", "n_mels": 40, "conv_channels": 16, "hidden": 16, "layers": 1, "dropout": 0.1,
              "spec_augment": True}


@pytest.fixture(scope="session")
def engine_ws(tiny_speech_archive: Path, tmp_path_factory) -> Path:
    """A workspace with the tiny espeak archive imported (shared by the engine tests; each run has its own name)."""
    from hearthkit.catalog.db import Catalog
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.store.cas import ContentStore
    from hearthkit.workspace import init_workspace

    ws = init_workspace(tmp_path_factory.mktemp("engine") / "ws")
    catalog = Catalog.open(ws.db_url)
    import_speech_folder(catalog, ContentStore(ws.store_dir), tiny_speech_archive, False)
    catalog.close()
    return ws.root


HEARTH = [sys.executable, "-m", "hearthkit.cli.main"]


def cli_env(ws: Path, extra: dict | None = None) -> dict:
    """The environment a user's shell would give `hearth`, pointed at workspace WS."""
    return dict(os.environ, COLUMNS="200", HEARTH_WORKSPACE=str(ws), **(extra or {}))


def run_cli(*args: str, ws: Path, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real `hearth` CLI to completion (a hang fails the test at TIMEOUT)."""
    return subprocess.run([*HEARTH, *args], capture_output=True, text=True, timeout=timeout, env=cli_env(ws, env))


def start_cli(*args: str, ws: Path, env: dict | None = None, stdout=None) -> subprocess.Popen:
    """Start the real `hearth` CLI without waiting (output to STDOUT, a file)."""
    return subprocess.Popen([*HEARTH, *args], stdout=stdout, stderr=subprocess.STDOUT, env=cli_env(ws, env),
                            start_new_session=True)  # its own process group, as a shell job has


@pytest.fixture(scope="session")
def cli_start():
    """cli_start(*args, ws=..., env=..., stdout=file) -> Popen: the `hearth` CLI, running."""
    return start_cli


@pytest.fixture(scope="session")
def cli():
    """cli(*args, ws=..., env=...): the `hearth` CLI in a subprocess."""
    return run_cli


@pytest.fixture(scope="session")
def tiny_config():
    """Writer of tiny asr run configs: tiny_config(folder, name, train={...}, launch={...}) -> path."""
    return write_config


def write_config(folder: Path, name: str, train: dict | None = None, launch: dict | None = None) -> Path:
    """A tiny asr run config NAME.yaml in FOLDER: 6 steps, checkpoints every 2, 2 workers, seeded."""
    cfg = {
        "name": name, "recipe": "asr",
        "request": {"purpose": "language_revitalization", "requester": "engine-test", "collections": ["demo-korero"]},
        "split": {"by": "text", "test_fraction": 0.15},
        "model": TINY_MODEL,
        "train": {"steps": 6, "batch_size": 2, "lr": 0.003, "warmup": 2, "checkpoint_every": 2, "log_every": 1,
                  "seed": 7, "mlflow": False, **(train or {})},
        "launch": {"nproc": 2, "timeout_s": 30, **(launch or {})},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def alive(pid: int) -> bool:
    """Whether PID is a live (not zombie) process."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def in_process_env(monkeypatch) -> None:
    """torchrun's environment for a world of one in this process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                 "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
