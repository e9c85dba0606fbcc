"""A whole governed run: plan (or resume) → torchrun → held-out evaluation → published model."""

from __future__ import annotations

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
                   on_line: Callable[[str], None]) -> RunResult:
    """Run CFG end to end; SAY reports stages, ON_LINE receives the workers' output lines."""
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.launch.local import run_torchrun, torchrun_command
    from hearthkit.launch.plan import plan_run
    from hearthkit.lineage.publish import publish_model

    run_dir, manifest, resumed = plan_run(ws, catalog, cfg)
    counts = ", ".join(f"{k} {v}" for k, v in manifest.excluded_counts().items()) or "none"
    say(f"run {cfg.name}: {len(manifest.included)} items permitted, excluded: {counts}")
    say(f"{'resuming' if resumed else 'starting'} in {run_dir}")
    cmd = torchrun_command(run_dir, cfg.launch)
    say(" ".join(cmd))
    rc = run_torchrun(cmd, cfg.launch, on_line)
    if rc != 0:
        raise HearthError(f"training failed (torchrun exit {rc}); see the rank errors above; "
                          f"re-run the same command to resume from the last checkpoint")
    say("evaluating on held-out items …")
    evaluation = evaluate_run(run_dir)
    card = publish_model(ws, catalog, run_dir, evaluation)
    return RunResult(run_dir, card, evaluation)
