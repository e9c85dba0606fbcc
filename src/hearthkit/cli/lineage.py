"""`hearth models …`, `hearth consent withdraw`, `hearth lineage export`: from models to data and back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, user_errors
from hearthkit.cli.common import table as cli_table

models_app = typer.Typer(help="The model registry: with no command, list the models.\n\nExample: hearth models",
                         invoke_without_command=True)
lineage_app = typer.Typer(help="Lineage exports.\n\nExample: hearth lineage export demo-asr", no_args_is_help=True)


@models_app.callback()
def models_default(ctx: typer.Context, as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """`hearth models` alone lists the models, as `hearth models ls` does."""
    if ctx.invoked_subcommand is None:
        ls(as_json=as_json, workspace=workspace)


@models_app.command("ls", help="List models with status, parent, restrictions and metrics.\n\n"
                               "Example: hearth models ls --json")
@user_errors
def ls(as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List registered models."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Model

    _, catalog = open_catalog(workspace)
    rows = []
    with catalog.session() as s:
        names = {m.id: m.name for m in s.scalars(select(Model))}
        for m in s.scalars(select(Model).order_by(Model.name)):
            rows.append({"model": m.name, "recipe": m.recipe, "status": m.status,
                         "parent": names.get(m.parent_id), "restrictions": list(m.restrictions),
                         "metrics": dict(m.metrics)})
    if as_json:
        print_json({"models": rows})
        return
    table = cli_table("model", "status", "parent", "restrictions", "metrics")
    for r in rows:
        table.add_row(r["model"], r["status"], r["parent"] or "–", ", ".join(r["restrictions"]) or "–",
                      ", ".join(f"{k} {v:.3f}" for k, v in r["metrics"].items() if v is not None))
    console.print(table)


@models_app.command("show", help="Show one model: run, manifest, parent chain, restrictions, attribution, status.\n\n"
                                 "Example: hearth models show demo-asr")
@user_errors
def show(name: Annotated[str, typer.Argument(help="Model name.")], workspace: WorkspaceOpt = None) -> None:
    """Show a model's lineage."""
    from sqlalchemy import func, select

    from hearthkit.catalog.models import Run, RunItem
    from hearthkit.lineage.registry import ancestors, get_model, successor

    _, catalog = open_catalog(workspace)
    with catalog.session() as s:
        m = get_model(s, name)
        run = s.get(Run, m.run_id)
        n = s.scalar(select(func.count()).where(RunItem.run_id == run.id))
        nxt = successor(s, m)
        console.print(f"model {m.name} [{m.status}]" + (f" – {m.status_reason}" if m.status_reason else ""),
                      highlight=False)
        console.print(f"  recipe {m.recipe}; run {run.name} (purpose {run.purpose}, requester {run.requester})")
        console.print(f"  manifest sha256 {m.manifest_hash} ({n} items)")
        chain = " ← ".join(a.name for a in ancestors(s, m)) or "none (trained from scratch)"
        console.print(f"  parents: {chain}", highlight=False)
        if nxt:
            console.print(f"  superseded by {nxt.name}")
        console.print(f"  restrictions: {', '.join(m.restrictions) or 'none'}")
        for a in m.attribution:
            console.print(f"  attribution: {a}", highlight=False)
        console.print(f"  card: {m.card_path}")


@models_app.command("register", help="Register a model folder from outside this workspace (no valid "
                                     "restrictions.json of ours), with the restrictions it must carry; a steward's "
                                     "act, audited. Restrictions already in the folder are kept.\n\n"
                                     "Example: hearth models register ../partner-asr --name partner-asr --community "
                                     "'Ngāti Demo' --by aroha --restriction tk:non_commercial --note 'from the "
                                     "language centre, 2026-11'")
@user_errors
def register(
    folder: Annotated[Path, typer.Argument(help="The model folder (config.json, model.safetensors).")],
    name: Annotated[str, typer.Option(help="Name it is used by here (unique among models).")],
    community: Annotated[str, typer.Option(help="Community whose steward takes responsibility for it.")],
    by: Annotated[str, typer.Option(help="Steward of that community registering it.")],
    restriction: Annotated[list[str] | None, typer.Option(help="A label key (e.g. tk:non_commercial) or "
                                                               "protocol:NAME it must carry; repeat for more.")]
    = None,
    note: Annotated[str | None, typer.Option(help="Where it came from, and why it may be used.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Register an external model folder by its weights' hash."""
    from hearthkit.lineage.folder import register_external

    _, catalog = open_catalog(workspace)
    with catalog.session() as s:
        ext = register_external(s, folder, name, community, by, restriction or [], note)
        console.print(f"registered {ext.name} ({ext.content_hash[:12]}…) for {community}; restrictions: "
                      f"{', '.join(ext.restrictions) or 'none'}", highlight=False)


@models_app.command("revoke", help="Revoke a model outright: it may not be served, exported or trained from again; "
                                   "models trained from it are marked needs-retrain. Only a steward of a community "
                                   "whose data it learned from; the reason is audited.\n\n"
                                   "Example: hearth models revoke demo-asr --by aroha --reason 'the council "
                                   "withdrew its use at the hui'")
@user_errors
def revoke(
    name: Annotated[str, typer.Argument(help="Model name.")],
    by: Annotated[str, typer.Option("--by", help="Steward of a community whose data the model learned from.")],
    reason: Annotated[str, typer.Option(help="Why it must not be used (required; goes to the audit log).")],
    workspace: WorkspaceOpt = None,
) -> None:
    """Revoke model NAME."""
    from hearthkit.lineage.revoke import revoke_model

    _, catalog = open_catalog(workspace)
    done = revoke_model(catalog, name, by, reason)
    console.print(f"revoked {done.model} (data of {', '.join(done.communities)})", highlight=False)
    if done.descendants:
        console.print(f"needs retraining now: {', '.join(done.descendants)}; retrain each with `hearth retrain "
                      "MODEL`", highlight=False)


def print_impact(scope: str, subject: str, impact) -> None:
    """Print a withdrawal's impact: items, erased objects, and the models to retrain."""
    console.print(f"withdrew {scope} {subject}: {impact.items} items; {impact.erased_objects} stored objects erased")
    if not impact.models:
        console.print("no model learned from these items")
        return
    table = cli_table("model", "run", "affected items", "of manifest", "via parent", "now")
    for r in impact.models:
        table.add_row(r["model"], r["run"], str(r["affected_items"]), str(r["manifest_items"]), r["via"] or "–",
                      "needs-retrain" if r["status"] == "active" else r["status"])
    console.print(table)
    console.print("retrain each with `hearth retrain MODEL`")


@lineage_app.command("export", help="Write the W3C PROV (JSON) derivation of a model: "
                                    "model ← run ← manifest ← items, "
                                    "parents, requester, communities.\n\n"
                                    "Example: hearth lineage export demo-asr -o p.json")
@user_errors
def export(name: Annotated[str, typer.Argument(help="Model name.")],
           output: Annotated[Path | None, typer.Option("-o", "--output", help="File (default: stdout).")] = None,
           workspace: WorkspaceOpt = None) -> None:
    """Export a model's lineage as PROV-JSON."""
    from hearthkit.lineage.prov import prov_json

    _, catalog = open_catalog(workspace)
    with catalog.session() as s:
        text = prov_json(s, name)
    if output:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}")
    else:
        print(text)
