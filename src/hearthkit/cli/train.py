"""`hearth plan`, `hearth train`, `hearth models`: governed training runs."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, user_errors
from hearthkit.cli.common import table as cli_table

PLAN_EXAMPLE = "\n\nExample: hearth plan configs/demo-asr.yaml --set request.purpose=commercial"
RETRAIN_EXAMPLE = "\n\nExample: hearth retrain demo-asr"
TRAIN_EXAMPLE = "\n\nExample: hearth train configs/demo-asr.yaml --max-restarts 2 --set train.steps=200"
RUNS_EXAMPLE = "\n\nExample: hearth runs --json"
NEW_EXAMPLE = "\n\nExample: hearth new asr > run.yaml"
SCHEMA_EXAMPLE = "\n\nExample: hearth schema run --recipe mt > run.schema.json"
EXPORT_EXAMPLE = "\n\nExample: hearth export demo-asr ./demo-asr-model"
ConfigArg = Annotated[Path, typer.Argument(help="Run config (YAML).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a config field: key.sub=value.")]
STEP = re.compile(r"^step (\d+)/(\d+)")


@user_errors
def plan(config: ConfigArg, set_: SetOpt = None, as_json: JsonOpt = False,
         as_of: Annotated[str | None, typer.Option("--as-of", help="Reproduce the manifest as it stood on this past "
                                                              "date (YYYY-MM-DD), read-only: training is always "
                                                              "judged today.")] = None,
         workspace: WorkspaceOpt = None) -> None:
    """Show what a run's request may use: included items, and excluded items counted by reason."""
    from hearthkit.engine.config import load_config
    from hearthkit.governance.policy import compute_manifest
    from hearthkit.governance.requests import get_request
    from hearthkit.launch.plan import make_request, parent_model

    cfg = load_config(config, (set_ or []) + ([f"request.as_of={as_of}"] if as_of else []))
    _, catalog = open_catalog(workspace)
    parent = parent_model(catalog, cfg)  # an init_from the run may not use is refused here, not at train time
    from hearthkit.lineage.base import base_for_run, base_terms

    # The base it would fine-tune, resolved, hash-checked and allowed for the purpose (else one line, as training).
    base = base_terms(base_for_run(catalog, cfg.model, cfg.request.purpose, cfg.request.requester))
    stored = None
    if cfg.request.id is not None:
        stored = get_request(catalog, cfg.request.id)
        man = compute_manifest(catalog, stored.policy_request())
    else:
        man = compute_manifest(catalog, make_request(cfg))
    if as_json:
        print_json({"run": cfg.name, "recipe": cfg.recipe, "request": {
            "purpose": man.request.purpose, "requester": man.request.requester,
            "collections": list(man.request.collections), "as_of": man.request.as_of},
            "stored_request": None if stored is None else {"id": stored.id, "status": stored.status,
                                                          "needs": list(stored.needs)},
            "included": len(man.included), "excluded": man.excluded_counts(), "restrictions": man.restrictions,
            "approvals_needed": man.approvals_needed, "notices": man.notices, "manifest_sha256": man.hash,
            "init_from": parent["name"] if parent else None, "base": base,
            "read_only": _read_only(man.request.as_of)})
        return
    if stored is not None:
        console.print(f"request {stored.id}: {stored.status}" + (f", needs approval by {', '.join(stored.needs)}"
                                                                  if stored.needs else ""))
    console.print(f"request: purpose {man.request.purpose}, requester {man.request.requester}, "
                  f"collections {', '.join(man.request.collections)}, as of {man.request.as_of}")
    table = cli_table("", "items")
    table.add_row("[green]included[/]", str(len(man.included)))
    for rule, n in man.excluded_counts().items():
        table.add_row(f"[red]excluded[/]: {rule}", str(n))
    console.print(table)
    if parent:
        console.print(f"initialises from model {parent['name']} (allowed for this purpose and requester)",
                      highlight=False)
    if base:
        console.print(f"fine-tunes base {base['name']} ({base['architecture']}, sha256 {base['content_hash']}), "
                      f"licence {base['licence']}; inherits from it: {', '.join(base['inherits']) or 'nothing'}",
                      highlight=False, soft_wrap=True)
        for note in base["notices"]:
            console.print(f"  {note}", highlight=False, soft_wrap=True)
    if man.restrictions:
        console.print(f"a model trained on this data inherits: {', '.join(man.restrictions)}")
    if man.approvals_needed:
        console.print(f"held for approval by the stewards of {', '.join(man.approvals_needed)}: "
                      "make a request with `hearth request` to ask them")
    if "notice:attribution_incomplete" in man.notices:
        console.print("[yellow]warning:[/] attribution of some items is incomplete (notice:attribution_incomplete)")
    console.print(f"manifest sha256 {man.hash}")
    if _read_only(man.request.as_of):
        console.print(f"read-only: as of {man.request.as_of} reproduces an old manifest; training is judged today",
                      highlight=False)


def _read_only(as_of: str) -> bool:
    """A manifest judged before today only reproduces an old one: no run may train on it."""
    from datetime import date

    return as_of < date.today().isoformat()




def _progress_runner(steps: int):
    """A rich progress bar fed by the workers' `step X/Y` lines; other lines are printed above it."""
    bar = Progress(TextColumn("training"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
                   TimeRemainingColumn(), console=console)
    task = bar.add_task("train", total=steps)

    def on_line(line: str) -> None:
        m = STEP.match(line)
        if m:
            bar.start()  # shown from the first step on: a run refused while planning shows no empty bar
            bar.update(task, completed=int(m.group(1)), total=int(m.group(2)))
        console.print(line, highlight=False, markup=False)

    return bar, on_line


def _say(msg: str) -> None:
    console.print(msg, highlight=False, markup=False)


def _results_table(evaluation: dict) -> Table:
    table = cli_table("by", "group", "n", *[m.upper() for m in evaluation["metrics"]])
    for r in evaluation["rows"]:
        table.add_row(r["by"], r["group"], str(r["n"]), *[f"{r[m]:.3f}" for m in evaluation["metrics"]])
    return table


@user_errors
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    nproc: Annotated[int | None, typer.Option(help="Worker processes (overrides launch.nproc).")] = None,
    max_restarts: Annotated[int, typer.Option(
        help="Restarts torchrun may make after a worker dies; each resumes from the last checkpoint.")] = 0,
    nnodes: Annotated[int, typer.Option(help="Machines taking part (c10d rendezvous when more than 1).")] = 1,
    node_rank: Annotated[int, typer.Option(help="This machine's number, 0..nnodes-1; node 0 hosts the "
                                                "rendezvous and plans the run.")] = 0,
    rdzv_endpoint: Annotated[str | None, typer.Option(help="HOST:PORT of node 0, resolved to an address here "
                                                           "(required with --nnodes > 1).")] = None,
    local_addr: Annotated[str | None, typer.Option(help="Address this node talks on (default: the route to "
                                                        "the rendezvous host).")] = None,
    iface: Annotated[str | None, typer.Option(help="Network interface for gloo/NCCL (GLOO_SOCKET_IFNAME, "
                                                   "NCCL_SOCKET_IFNAME); default: the one carrying "
                                                   "--local-addr.")] = None,
    no_eval: Annotated[bool, typer.Option("--no-eval", help="Publish the model without scoring it on the test "
                                                           "items (they stay unread while settings are compared; "
                                                           "`hearth eval` scores it later).")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Train under policy with torchrun: plan (or resume) the run, train, evaluate per group, write the model card."""
    from hearthkit.engine.config import load_config
    from hearthkit.errors import HearthError
    from hearthkit.launch import multinode
    from hearthkit.launch.local import check_backend
    from hearthkit.launch.pipeline import train_pipeline

    if max_restarts < 0:
        raise HearthError("--max-restarts must be 0 or more")
    cfg = load_config(config, (set_ or []) + ([f"launch.nproc={nproc}"] if nproc else []))
    check_backend(cfg.launch)  # the workers start on this machine: it must have what the backend needs
    ws, catalog = open_catalog(workspace)
    node = None
    if nnodes > 1 or rdzv_endpoint:
        if not rdzv_endpoint:
            raise HearthError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (node 0's address), e.g. node01:29400")
        node = multinode.resolve_node(nnodes, node_rank, rdzv_endpoint, cfg.name, local_addr, iface)
        console.print(node.describe(), highlight=False, soft_wrap=True)
        os.environ.update(node.env())  # inherited by torchrun and its workers
    bar, on_line = _progress_runner(cfg.train.steps)
    try:
        result = train_pipeline(ws, catalog, cfg, _say, on_line, node=node, max_restarts=max_restarts,
                                evaluate=not no_eval)
    finally:
        if bar.live.is_started:  # stopping a bar never shown would print an empty line
            bar.stop()
    if result is None:
        console.print(f"node {node.node_rank}: training finished; node 0 evaluates and writes the model card")
        return
    if no_eval:
        console.print(f"not evaluated (--no-eval): `hearth eval {cfg.name}` scores it on its test items, "
                      f"`--split valid` on its validation items")
        console.print(f"model card: {result.card}")
        return
    console.print(_results_table(result.evaluation))
    for m, sig in (result.evaluation.get("signatures") or {}).items():
        console.print(f"{m.upper()} signature (sacrebleu): {sig}", highlight=False)
    console.print(f"model card: {result.card}")


@user_errors
def retrain(name: Annotated[str, typer.Argument(help="Model to retrain without withdrawn items.")],
            workspace: WorkspaceOpt = None) -> None:
    """Retrain a model after a withdrawal: same request, recipe and config, a fresh manifest; the old is revoked."""
    from hearthkit.lineage.retrain import retrain as do_retrain

    ws, catalog = open_catalog(workspace)
    bar, on_line = _progress_runner(1)
    try:
        new, result = do_retrain(ws, catalog, name, _say, on_line)
    finally:
        if bar.live.is_started:  # stopping a bar never shown would print an empty line
            bar.stop()
    console.print(_results_table(result.evaluation))
    console.print(f"{new} supersedes {name} (now revoked); model card: {result.card}")


@user_errors
def runs(as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List training runs: status, progress, last loss and throughput, MLflow run id."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Run
    from hearthkit.launch.local import mlflow_uri

    ws, catalog = open_catalog(workspace)
    rows = []
    with catalog.session() as s:
        for r in s.scalars(select(Run).order_by(Run.created_at)):
            run_dir = ws.run_dir(r.name)
            last = _last_metrics(run_dir / "metrics.jsonl") or {}
            id_file = run_dir / "mlflow_run_id"
            rows.append({"run": r.name, "recipe": r.recipe, "status": r.status, "step": last.get("step"),
                         "steps": last.get("steps"), "loss": last.get("loss"),
                         "samples_per_s": last.get("samples_per_s"),
                         "mlflow_run": id_file.read_text().strip() if id_file.is_file() else None,
                         "created": r.created_at.isoformat(timespec="seconds")})
    uri = mlflow_uri(ws.root)
    if as_json:
        print_json({"runs": rows, "mlflow_store": uri})
        return
    table = cli_table("run", "recipe", "status", "step", "loss", "samples/s", "mlflow run", "created")
    for r in rows:
        known = r["step"] is not None
        table.add_row(r["run"], r["recipe"], r["status"], f"{r['step']}/{r['steps']}" if known else "–",
                      f"{r['loss']:.4f}" if r["loss"] is not None else "–",
                      f"{r['samples_per_s']:.1f}" if r["samples_per_s"] is not None else "–",
                      r["mlflow_run"] or "–", r["created"].replace("T", " ")[:16])
    console.print(table)
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
    purpose: Annotated[str | None, typer.Option(help="What the export is for (default: the run's purpose); "
                                                     "refused where the model's restrictions forbid it.")] = None,
    requester: Annotated[str | None, typer.Option(help="Who receives it (default: the run's requester).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Write a model's final weights (safetensors), its model card (README.md), config and preparation to a folder."""
    from hearthkit.engine.export import export_model

    _, catalog = open_catalog(workspace)
    out, restrictions = export_model(catalog, model, dest, purpose, requester)
    console.print(f"exported {model} to {out}")
    if restrictions:
        console.print(f"[bold]restrictions travel with it[/]: {', '.join(restrictions)} (see README.md)")


RecipeArg = Annotated[str, typer.Argument(help="Recipe: asr, mt, lm, landcover or change.", show_default=False)]


@user_errors
def new(recipe: RecipeArg) -> None:
    """Print a starter run config for RECIPE: every field with its description as a comment, at its default."""
    from hearthkit.engine.starter import starter_config

    sys.stdout.write(starter_config(recipe))


@user_errors
def schema(
    what: Annotated[str, typer.Argument(help="What to describe: run (a run config).")] = "run",
    recipe: Annotated[str | None, typer.Option(help="Describe the model section of this recipe too.")] = None,
) -> None:
    """Print the JSON schema of a run config (for editors and validators)."""
    from hearthkit.engine.starter import run_schema
    from hearthkit.errors import HearthError

    if what != "run":
        raise HearthError(f"schema {what!r}: only `run` (a run config) has a schema")
    print_json(run_schema(recipe))
