"""`hearth ledger COMMUNITY`: what a community's data and compute went into, and who used the result."""

from __future__ import annotations

from typing import Annotated

import typer

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, table, user_errors

EXAMPLE = "\n\nExample: hearth ledger 'Te Hapori Tauira (demo community)' --json"


@user_errors
def ledger(community: Annotated[str, typer.Argument(help="The community, as its collections name it.")],
           as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """Per model: items and hours of the community's data, its share of what training read, compute, later uses."""
    from hearthkit.lineage.ledger import community_ledger

    ws, catalog = open_catalog(workspace)
    rows = community_ledger(ws, catalog, community)
    if as_json:
        print_json({"community": community, "models": rows})
        return
    t = table("model", "kind", "items", "hours", "share read", "worker-hours", "exports", "serves")
    for r in rows:
        compute = ", ".join(f"{v:.3f} {k}" for k, v in r["compute"].items())
        if r["slurm_accounts"]:
            compute += f" (SLURM {', '.join(r['slurm_accounts'])})"
        t.add_row(r["model"], r["kind"], str(r["items"]), f"{r['hours']:.3f}", f"{r['share']:.0%}", compute,
                  str(r["uses"]["export"]), str(r["uses"]["serve"]))
    console.print(t)
    if not rows:
        console.print(f"no model has learned from {community}'s data in this workspace")
