"""Start the training workers on this machine with torchrun (standalone rendezvous)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hearthkit.engine.config import LaunchConfig, RunConfig
from hearthkit.errors import HearthError


def torchrun_command(run_dir: Path, launch: LaunchConfig, max_restarts: int = 0) -> list[str]:
    """The torchrun command line for RUN_DIR (readable; printed before it runs)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={launch.nproc}",
            f"--max-restarts={max_restarts}", "-m", "hearthkit.engine.trainer", str(run_dir)]


def check_backend(launch: LaunchConfig) -> None:
    """Refuse launch.backend nccl on a machine without CUDA GPUs: each worker would fail at start with a traceback."""
    import torch

    if launch.backend == "nccl" and not torch.cuda.is_available():
        raise HearthError("launch.backend: nccl needs CUDA GPUs and this machine has none; use auto or gloo "
                          "(--set launch.backend=auto)")


def mlflow_uri(workspace_root: Path) -> str:
    """The workspace's MLflow store (a SQLite file, readable by `mlflow ui --backend-store-uri`)."""
    return f"sqlite:///{workspace_root / 'mlflow.db'}"


@dataclass
class Launch:
    """What a torchrun launch left behind: exit code, start time, its last output lines."""

    rc: int
    started: float
    output: deque[str] = field(default_factory=lambda: deque(maxlen=500))  # torchrun's report comes last


def launch_torchrun(cmd: list[str], launch: LaunchConfig, on_line: Callable[[str], None],
                    env: dict[str, str] | None = None) -> Launch:
    """Run CMD, passing each output line to ON_LINE; return the launch's exit code, start time and last lines."""
    full_env = dict(os.environ, OMP_NUM_THREADS=str(launch.threads_per_worker), PYTHONUNBUFFERED="1", **(env or {}))
    started = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env)
    assert proc.stdout is not None
    out = Launch(rc=0, started=started)
    for line in proc.stdout:
        line = line.rstrip("\n")
        out.output.append(line)
        on_line(line)
    out.rc = proc.wait()
    return out


def run_torchrun(cmd: list[str], launch: LaunchConfig, on_line: Callable[[str], None],
                 env: dict[str, str] | None = None) -> int:
    """Run CMD, passing each output line to ON_LINE; return torchrun's exit code."""
    return launch_torchrun(cmd, launch, on_line, env).rc


def worker_env(cfg: RunConfig, workspace_root: Path) -> dict[str, str]:
    """Environment the workers need from the launcher: the MLflow store (unless the user set one)."""
    if not cfg.train.mlflow:
        return {}
    return {"MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI") or mlflow_uri(workspace_root)}


def outcome(run_dir: Path, done: Launch, timeout_s: int, show: Callable[[str], None]) -> dict:
    """The run's end state after launch DONE ({"status": "finished" | "stopped", "step": N}); on a failed launch,
    SHOW the failing rank's last log lines and raise a one-line error naming the rank, its host and the cause."""
    from hearthkit.engine.checkpoint import checkpoints
    from hearthkit.engine.faults import diagnose
    from hearthkit.engine.trainer import STATE_FILE

    if done.rc != 0:
        summary, lines = diagnose(run_dir, done.started, done.output, timeout_s)
        for line in lines:
            show(line)
        # Only a checkpoint makes a re-run a resume; before the first one, the cause must be fixed first.
        then = ("re-run the same command to resume from the last checkpoint" if checkpoints(run_dir / "checkpoints")
                else "no checkpoint was written, so there is nothing to resume; fix the cause and run it again")
        raise HearthError(f"training failed (torchrun exit {done.rc}): {summary}; {then}")
    return json.loads((run_dir / STATE_FILE).read_text())
