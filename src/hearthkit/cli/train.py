"""`hearth plan`, `hearth train`, `hearth models`: governed training runs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hearthkit.cli.common import WorkspaceOpt, console, err_console, open_catalog, user_errors
from hearthkit.errors import HearthError

PLAN_EXAMPLE = "\n\nExample: hearth plan configs/demo-asr.yaml --set request.purpose=commercial"
TRAIN_EXAMPLE = "\n\nExample: hearth train configs/demo-asr.yaml --max-restarts 2 --set train.steps=200"
RUNS_EXAMPLE = "\n\nExample: hearth runs"
EXPORT_EXAMPLE = "\n\nExample: hearth export demo-asr ./demo-asr-model"
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
    max_restarts: Annotated[int, typer.Option(
        help="Restarts torchrun may make after a worker dies; each resumes from the last checkpoint.")] = 0,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train under policy with torchrun: plan (or resume) the run, train, evaluate per group, write the model card."""
    from hearthkit.engine.config import load_config
    from hearthkit.engine.trainer import STATE_FILE
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.launch.local import launch_torchrun, outcome, torchrun_command, worker_env
    from hearthkit.launch.plan import plan_run
    from hearthkit.lineage.publish import publish_model

    if max_restarts < 0:
        raise HearthError("--max-restarts must be 0 or more")
    cfg = load_config(config, (set_ or []) + ([f"launch.nproc={nproc}"] if nproc else []))
    ws, catalog = open_catalog(workspace)
    run_dir, manifest, resumed = plan_run(ws, catalog, cfg)
    counts = ", ".join(f"{k} {v}" for k, v in manifest.excluded_counts().items()) or "none"
    console.print(f"run {cfg.name}: {len(manifest.included)} items permitted, excluded: {counts}")
    console.print(f"{'resuming' if resumed else 'starting'} in {run_dir}")
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    _set_status(catalog, cfg.name, "training")
    cmd = torchrun_command(run_dir, cfg.launch, max_restarts)
    console.print("[dim]" + " ".join(cmd) + "[/]", highlight=False)
    with Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                  TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("train", total=cfg.train.steps)

        def on_line(line: str) -> None:
            m = STEP.match(line)
            if m:
                bar.update(task, completed=int(m.group(1)), total=int(m.group(2)))
            console.print(line, highlight=False, markup=False)

        done = launch_torchrun(cmd, cfg.launch, on_line, worker_env(cfg, ws.root))
    try:
        state = outcome(run_dir, done, cfg.launch.timeout_s,
                        lambda line: err_console.print(line, highlight=False, markup=False))
    except HearthError:
        _set_status(catalog, cfg.name, "failed")
        raise
    if state["status"] == "stopped":
        _set_status(catalog, cfg.name, "stopped")
        console.print(f"stopped at step {state['step']} with a checkpoint; re-run the same command to resume")
        return
    console.print("evaluating on held-out items …")
    evaluation = evaluate_run(run_dir)
    card = publish_model(ws, catalog, run_dir, evaluation)
    table = Table("by", "group", "n", *[m.upper() for m in evaluation["metrics"]])
    for r in evaluation["rows"]:
        table.add_row(r["by"], r["group"], str(r["n"]), *[f"{r[m]:.3f}" for m in evaluation["metrics"]])
    console.print(table)
    console.print(f"model card: {card}")


def _set_status(catalog, name: str, status: str) -> None:
    """Record a run's status in the catalog (planned, training, stopped, failed, finished)."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Run

    with catalog.session() as s:
        run = s.scalar(select(Run).where(Run.name == name))
        if run is not None:
            run.status = status


@user_errors
def runs(workspace: WorkspaceOpt = None) -> None:
    """List training runs: status, progress, last loss and throughput, MLflow run id."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Run
    from hearthkit.launch.local import mlflow_uri

    ws, catalog = open_catalog(workspace)
    table = Table("run", "recipe", "status", "step", "loss", "samples/s", "mlflow run", "created")
    with catalog.session() as s:
        for r in s.scalars(select(Run).order_by(Run.created_at)):
            run_dir = ws.run_dir(r.name)
            last = _last_metrics(run_dir / "metrics.jsonl")
            id_file = run_dir / "mlflow_run_id"
            table.add_row(r.name, r.recipe, r.status, f"{last['step']}/{last['steps']}" if last else "–",
                          f"{last['loss']:.4f}" if last else "–", f"{last['samples_per_s']:.1f}" if last else "–",
                          id_file.read_text().strip() if id_file.is_file() else "–",
                          r.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)
    uri = mlflow_uri(ws.root)
    console.print(f"MLflow store: {uri}  (browse: mlflow ui --backend-store-uri {uri})", highlight=False)


def _last_metrics(path: Path) -> dict | None:
    """The last record of a run's metrics.jsonl."""
    if not path.is_file():
        return None
    lines = path.read_text().strip().splitlines()
    return json.loads(lines[-1]) if lines else None


@user_errors
def export(
    model: Annotated[str, typer.Argument(help="Model name (see `hearth models`).")],
    dest: Annotated[Path, typer.Argument(help="Folder to create with the weights and the model card.")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a model's final weights (safetensors), its model card (README.md), config and preparation to a folder."""
    from hearthkit.engine.export import export_model

    _, catalog = open_catalog(workspace)
    out, restrictions = export_model(catalog, model, dest)
    console.print(f"exported {model} to {out}")
    if restrictions:
        console.print(f"[bold]restrictions travel with it[/]: {', '.join(restrictions)} (see README.md)")


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
