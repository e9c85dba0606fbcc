"""A governed run trained in the test's own process (a world of one): what `hearth train` does minus torchrun.

The real launcher's path (tests that keep one torchrun launch per recipe family prove it) is plan → torchrun
workers → record reads → evaluate → publish. Here the worker's own function, engine/trainer.train, runs in this
process with torchrun's environment for one rank, so a test pays no interpreter start or `import transformers` per
worker. `interrupted_then_resumed` stands in for a SIGKILL after step N: the run is stopped after step N, the
checkpoint written at N is removed (a killed rank writes none), and the resumed run replays from the one before.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from tests.engine.conftest import in_process_env


def plan(ws_root: Path, config: Path, overrides: list[str] | None = None) -> Path:
    """Plan CONFIG in the workspace at WS_ROOT as `hearth train` does; the run's folder."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.engine.config import load_config
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace

    ws = open_workspace(ws_root)
    catalog = open_workspace_catalog(ws)
    try:
        return plan_run(ws, catalog, load_config(config, overrides or []))[0]
    finally:
        catalog.close()


def train_run(run_dir: Path, monkeypatch, stop_after: int | None = None) -> str:
    """engine/trainer.train on RUN_DIR in this process ("finished" or "stopped"), torch's global settings kept."""
    from hearthkit.engine import stop
    from hearthkit.engine.trainer import train

    in_process_env(monkeypatch)
    threads, determined = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if stop_after is not None:
        monkeypatch.setenv("HEARTH_TEST_STOP", f"0:{stop_after}")
    try:
        return train(run_dir, [])
    finally:
        if dist.is_initialized():  # a refused or failed worker leaves its group behind
            dist.destroy_process_group()
        stop.clear()  # a fresh worker would start without the request
        monkeypatch.delenv("HEARTH_TEST_STOP", raising=False)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(determined)


def interrupted_then_resumed(run_dir: Path, monkeypatch, after: int) -> str:
    """Stop RUN_DIR after step AFTER, drop that step's checkpoint (as a SIGKILL would leave none), resume it."""
    assert train_run(run_dir, monkeypatch, stop_after=after) == "stopped"
    shutil.rmtree(run_dir / "checkpoints" / f"step_{after:08d}")
    assert train_run(run_dir, monkeypatch) == "finished"
    return (run_dir / "logs" / "rank0.log").read_text()


def publish(ws_root: Path, run_dir: Path, evaluate: bool = True):
    """What `hearth train` does after its workers: record their reads, evaluate, publish (launch/pipeline.py)."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.launch.pipeline import finish_run
    from hearthkit.launch.plan import record_data_access
    from hearthkit.workspace import open_workspace

    ws = open_workspace(ws_root)
    catalog = open_workspace_catalog(ws)
    try:
        record_data_access(catalog, run_dir, run_dir.name)
        return finish_run(ws, catalog, run_dir, evaluate)
    finally:
        catalog.close()


def export(ws_root: Path, name: str, dest: Path) -> None:
    """`hearth models export NAME DEST` in this process (engine/export.export_model with the workspace's catalog)."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.engine.export import export_model
    from hearthkit.workspace import open_workspace

    catalog = open_workspace_catalog(open_workspace(ws_root))
    try:
        export_model(catalog, name, dest)
    finally:
        catalog.close()
