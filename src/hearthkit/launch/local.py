"""Start the training workers on this machine with torchrun (standalone rendezvous)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hearthkit.engine.config import LaunchConfig


def torchrun_command(run_dir: Path, launch: LaunchConfig, max_restarts: int = 0) -> list[str]:
    """The torchrun command line for RUN_DIR (readable; printed before it runs)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={launch.nproc}",
            f"--max-restarts={max_restarts}", "-m", "hearthkit.engine.trainer", str(run_dir)]


def run_torchrun(cmd: list[str], launch: LaunchConfig, on_line: Callable[[str], None]) -> int:
    """Run CMD, passing each output line to ON_LINE; return torchrun's exit code."""
    env = dict(os.environ, OMP_NUM_THREADS=str(launch.threads_per_worker), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        on_line(line.rstrip("\n"))
    return proc.wait()
