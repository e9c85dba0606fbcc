"""`hearth plan`, `hearth train`, `hearth models`: governed training runs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hearthkit.cli.common import WorkspaceOpt, console, open_catalog, user_errors
from hearthkit.errors import HearthError

PLAN_EXAMPLE = "\n\nExample: hearth plan configs/demo-asr.yaml --set request.purpose=commercial"
TRAIN_EXAMPLE = "\n\nExample: hearth train configs/demo-asr.yaml --set train.steps=200"
ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key.sub=value.")]
STEP = re.compile(r"^step (\d+)/(\d+)")


@user_errors
def plan(config: ConfigArg, set_: SetOpt = None, workspace: WorkspaceOpt = None) -> None:
    """Show what a run's request may use: included items, and excluded items counted by reason."""
    from hearthkit.engine.config import load_config
    from hearthkit.governance.policy import compute_manifest
    from hearthkit.launch.plan import make_request

    cfg = load_config(config, set_)
    _, catalog = open_catalog(workspace)
    man = compute_manifest(catalog, make_request(cfg))
    console.print(f"request: purpose {man.request.purpose}, requester {man.request.requester}, "
                  f"collections {', '.join(man.request.collections)}, as of {man.request.as_of}")
    table = Table("", "items")
    table.add_row("[green]included[/]", str(len(man.included)))
    for rule, n in man.excluded_counts().items():
        table.add_row(f"[red]excluded[/]: {rule}", str(n))
    console.print(table)
    if man.restrictions:
        console.print(f"a model trained on this data inherits: {', '.join(man.restrictions)}")
    console.print(f"manifest sha256 {man.hash}")




@user_errors
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    nproc: Annotated[int | None, typer.Option(help="Worker processes (overrides launch.nproc).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train under policy with torchrun: plan (or resume) the run, train, evaluate per group, write the model card."""
    from hearthkit.engine.config import load_config
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.launch.local import run_torchrun, torchrun_command
    from hearthkit.launch.plan import plan_run
    from hearthkit.lineage.publish import publish_model

    cfg = load_config(config, (set_ or []) + ([f"launch.nproc={nproc}"] if nproc else []))
    ws, catalog = open_catalog(workspace)
    run_dir, manifest, resumed = plan_run(ws, catalog, cfg)
    counts = ", ".join(f"{k} {v}" for k, v in manifest.excluded_counts().items()) or "none"
    console.print(f"run {cfg.name}: {len(manifest.included)} items permitted, excluded: {counts}")
    console.print(f"{'resuming' if resumed else 'starting'} in {run_dir}")
    cmd = torchrun_command(run_dir, cfg.launch)
    console.print("[dim]" + " ".join(cmd) + "[/]", highlight=False)
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("train", total=cfg.train.steps)

        def on_line(line: str) -> None:
            m = STEP.match(line)
            if m:
                bar.update(task, completed=int(m.group(1)), total=int(m.group(2)))
            console.print(line, highlight=False, markup=False)

        rc = run_torchrun(cmd, cfg.launch, on_line)
    if rc != 0:
        raise HearthError(f"training failed (torchrun exit {rc}); see the rank errors above; "
                          f"re-run the same command to resume from the last checkpoint")
    console.print("evaluating on held-out items …")
    evaluation = evaluate_run(run_dir)
    card = publish_model(ws, catalog, run_dir, evaluation)
    table = Table("by", "group", "n", *[m.upper() for m in evaluation["metrics"]])
    for r in evaluation["rows"]:
        table.add_row(r["by"], r["group"], str(r["n"]), *[f"{r[m]:.3f}" for m in evaluation["metrics"]])
    console.print(table)
    for m, sig in (evaluation.get("signatures") or {}).items():
        console.print(f"{m.upper()} signature (sacrebleu): {sig}", highlight=False)
    console.print(f"model card: {card}")




@user_errors
def models(workspace: WorkspaceOpt = None) -> None:
    """List trained models with status, restrictions and overall metrics."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Model

    _, catalog = open_catalog(workspace)
    table = Table("model", "status", "restrictions", "metrics", "card")
    with catalog.session() as s:
        for m in s.scalars(select(Model).order_by(Model.name)):
            table.add_row(m.name, m.status, ", ".join(m.restrictions) or "–",
                          ", ".join(f"{k} {v:.3f}" for k, v in m.metrics.items() if v is not None),
                          m.card_path or "–")
    console.print(table)
