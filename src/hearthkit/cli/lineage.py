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


@models_app.command("show", help="Show one model: run, manifest, parent chain, pretrained base and its terms, "
                                 "restrictions, attribution, status.\n\nExample: hearth models show demo-asr --json")
@user_errors
def show(name: Annotated[str, typer.Argument(help="Model name.")], as_json: JsonOpt = False,
         workspace: WorkspaceOpt = None) -> None:
    """Show a model's lineage."""
    from sqlalchemy import func, select

    from hearthkit.catalog.models import Run, RunItem
    from hearthkit.lineage.base import model_base_terms
    from hearthkit.lineage.registry import ancestors, get_model, successor

    _, catalog = open_catalog(workspace)
    with catalog.session() as s:
        m = get_model(s, name)
        run = s.get(Run, m.run_id) if m.run_id is not None else None
        n = s.scalar(select(func.count()).where(RunItem.run_id == run.id)) if run is not None else 0
        nxt = successor(s, m)
        base = model_base_terms(s, m)
        doc = {"name": m.name, "status": m.status, "status_reason": m.status_reason, "recipe": m.recipe,
               "run": run.name if run else None, "purpose": run.purpose if run else None,
               "requester": run.requester if run else None, "manifest_sha256": m.manifest_hash, "items": n,
               "parents": [a.name for a in ancestors(s, m)], "superseded_by": nxt.name if nxt else None,
               "base": base, "restrictions": list(m.restrictions or []), "attribution": list(m.attribution or []),
               "card": m.card_path}
    if as_json:
        print_json(doc)
        return
    console.print(f"model {doc['name']} [{doc['status']}]" + (f" – {m.status_reason}" if m.status_reason else ""),
                  highlight=False)
    console.print(f"  recipe {doc['recipe']}; run {doc['run']} (purpose {doc['purpose']}, requester "
                  f"{doc['requester']})")
    console.print(f"  manifest sha256 {doc['manifest_sha256']} ({n} items)")
    console.print(f"  parents: {' ← '.join(doc['parents']) or 'none (trained from scratch)'}", highlight=False)
    if base:
        console.print(f"  base: {base['name']} ({base['architecture']}), sha256 {base['content_hash']}, licence "
                      f"{base['licence']}, source {base['source']}; training data: "
                      f"{base['training_data'] or 'undeclared'}; inherited from it: "
                      f"{', '.join(base['inherits']) or 'nothing'}", highlight=False, soft_wrap=True)
    if nxt:
        console.print(f"  superseded by {doc['superseded_by']}")
    console.print(f"  restrictions: {', '.join(doc['restrictions']) or 'none'}")
    for a in doc["attribution"]:
        console.print(f"  attribution: {a}", highlight=False)
    console.print(f"  card: {doc['card']}")


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
    if getattr(impact, "erased_manifests", 0) or getattr(impact, "erased_index_items", 0):
        console.print(f"their words erased from {impact.erased_manifests} run manifests; "
                      f"{impact.erased_index_items} entries taken out of spoken-term indexes", highlight=False)
    for line in getattr(impact, "unreadable", []):
        console.print(f"[red]not erased[/] {line}; the withdrawn items' words may remain in it: a steward repairs "
                      "or deletes it, then runs this withdrawal again", highlight=False)
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
