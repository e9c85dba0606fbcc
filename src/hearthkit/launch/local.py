"""Start the training workers on this machine with torchrun (standalone rendezvous)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hearthkit.engine.config import LaunchConfig


def torchrun_command(run_dir: Path, launch: LaunchConfig, max_restarts: int = 0) -> list[str]:
    """The torchrun command line for RUN_DIR (readable; printed before it runs)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={launch.nproc}",
            f"--max-restarts={max_restarts}", "-m", "hearthkit.engine.trainer", str(run_dir)]


def mlflow_uri(workspace_root: Path) -> str:
    """The workspace's MLflow store (a SQLite file, readable by `mlflow ui --backend-store-uri`)."""
    return f"sqlite:///{workspace_root / 'mlflow.db'}"


@dataclass
class Launch:
    """What a torchrun launch left behind: exit code, start time, its last output lines."""

    rc: int
    started: float
    output: deque[str] = field(default_factory=lambda: deque(maxlen=500))  # torchrun's report comes last


def run_torchrun(cmd: list[str], launch: LaunchConfig, on_line: Callable[[str], None],
                 env: dict[str, str] | None = None) -> Launch:
    """Run CMD, passing each output line to ON_LINE; return the launch's exit code and output."""
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
