"""A whole governed run: plan (or resume) → torchrun → held-out evaluation → published model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hearthkit.catalog.db import Catalog
from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError
from hearthkit.workspace import Workspace


@dataclass
class RunResult:
    """Where a finished run's outputs are."""

    run_dir: Path
    card: Path
    evaluation: dict


def train_pipeline(ws: Workspace, catalog: Catalog, cfg: RunConfig, say: Callable[[str], None],
                   on_line: Callable[[str], None], node=None, max_restarts: int = 0,
                   evaluate: bool = True) -> RunResult | None:
    """Run CFG end to end; SAY reports stages, ON_LINE receives the workers' output lines.

    With NODE (a multinode.NodePlan), node 0 plans, trains and publishes; other nodes wait for node 0's plan,
    train, and return None. Without EVALUATE the model is published unscored and its test items stay unread.
    """
    from hearthkit.engine.trainer import STATE_FILE
    from hearthkit.launch import multinode
    from hearthkit.launch.local import launch_torchrun, outcome, torchrun_command, worker_env
    from hearthkit.launch.plan import plan_run, record_data_access

    follower = node is not None and node.node_rank > 0
    if follower:
        run_dir = ws.run_dir(cfg.name)
        say(f"waiting for node 0 to plan {run_dir} …")
        multinode.wait_for_plan(run_dir, cfg, timeout_s=cfg.launch.timeout_s)
    else:
        run_dir, manifest, resumed = plan_run(ws, catalog, cfg)
        counts = ", ".join(f"{k} {v}" for k, v in manifest.excluded_counts().items()) or "none"
        say(f"run {cfg.name}: {len(manifest.included)} items permitted, excluded: {counts}")
        say(f"{'resuming' if resumed else 'starting'} in {run_dir}")
    cmd = torchrun_command(run_dir, cfg.launch, max_restarts) if node is None else \
        multinode.torchrun_multinode_command(run_dir, cfg.launch, node, max_restarts)
    say(" ".join(cmd))
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    _set_status(catalog, cfg.name, "training", follower)
    done = launch_torchrun(cmd, cfg.launch, on_line, worker_env(cfg, ws.root))
    if not follower:
        record_data_access(catalog, run_dir, cfg.name)  # what the workers read, even when training failed
    try:
        state = outcome(run_dir, done, cfg.launch.timeout_s, say)
    except HearthError:
        _set_status(catalog, cfg.name, "failed", follower)
        raise
    if follower:
        return None
    if state["status"] == "stopped":
        _set_status(catalog, cfg.name, "stopped", follower)
        raise HearthError(f"stopped at step {state['step']} with a checkpoint; re-run the same command to resume")
    if evaluate:
        say("evaluating on held-out items …")
    return finish_run(ws, catalog, run_dir, evaluate)


def _set_status(catalog: Catalog, name: str, status: str, follower: bool) -> None:
    """Record a run's status in the catalog (node 0 only): training, stopped, failed; publishing sets finished."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Run

    if follower:
        return
    with catalog.session() as s:
        run = s.scalar(select(Run).where(Run.name == name))
        if run is not None:
            run.status = status


def finish_run(ws: Workspace, catalog: Catalog, run_dir: Path, evaluate: bool = True) -> RunResult:
    """Evaluate a trained run on its held-out items (unless not EVALUATE) and publish it as a model with its card."""
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.governance import audit
    from hearthkit.lineage.publish import publish_model
    from hearthkit.recipes import get_recipe

    if evaluate:
        evaluation = evaluate_run(run_dir, catalog=catalog)  # its reads audited, phase "evaluation"
    else:  # e.g. while settings are compared on validation items: `hearth eval` scores it later
        recipe = json.loads((run_dir / "run.json").read_text())["config"]["recipe"]
        evaluation = {"records": [], "rows": [], "gaps": {}, "metrics": get_recipe(recipe).metric_names,
                      "signatures": {}}
    card = publish_model(ws, catalog, run_dir, evaluation)
    spec = json.loads((run_dir / "run.json").read_text())
    audit.record(catalog, "export", spec["config"]["request"]["requester"], model=spec["config"]["name"],
                 manifest=spec["manifest_hash"], card=str(card))
    return RunResult(run_dir, card, evaluation)
