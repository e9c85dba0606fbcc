"""`hearth keys …`: the community keys that unlock encrypted (restricted) collections."""

from __future__ import annotations

from typing import Annotated

import typer

from hearthkit.cli.common import WorkspaceOpt, console, open_catalog, user_errors
from hearthkit.cli.common import table as cli_table

keys_app = typer.Typer(help="Community keys of encrypted collections.\n\nExample: hearth keys ls",
                       no_args_is_help=True)


@keys_app.command("ls", help="List data keys (never their secrets): collection, community, community key, "
                             "and where the key files are.\n\nExample: hearth keys ls")
@user_errors
def ls(workspace: WorkspaceOpt = None) -> None:
    """List data keys."""
    from hearthkit.store.vault import workspace_store

    ws, _ = open_catalog(workspace)
    keys = workspace_store(ws).keys
    table = cli_table("data key", "collection", "community", "community key", "created", "retired")
    for r in keys.records():
        table.add_row(r["key_id"][:12], r["collection"], r["community"], r["kek_id"], r["created_at"][:19],
                      "yes" if r.get("retired") else "")
    console.print(table)
    console.print(f"community key files: {keys.key_dir}", highlight=False)


@keys_app.command("rotate", help="Make a new community key, re-wrap every data key of the community with it and "
                                 "destroy the old key. With --reencrypt, also give each collection a new data key "
                                 "and re-encrypt its objects (slower; do it when a key may have leaked). Safe to "
                                 "re-run after an interruption.\n\n"
                                 "Example: hearth keys rotate --community 'Ngāti Demo'")
@user_errors
def rotate(
    community: Annotated[list[str] | None, typer.Option(help="Community whose key to rotate (repeatable; "
                                                             "default: every community with a key).")] = None,
    reencrypt: Annotated[bool, typer.Option(help="Also re-encrypt objects under new data keys.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Rotate community keys."""
    from hearthkit.store.rotate import reencrypt_collection
    from hearthkit.store.vault import workspace_store

    ws, catalog = open_catalog(workspace)
    store = workspace_store(ws)
    communities = community or sorted({r["community"] for r in store.keys.records()})
    if not communities:
        console.print("no encrypted collections: nothing to rotate")
        return
    for name in communities:
        if reencrypt:
            for coll in sorted({r["collection"] for r in store.keys.records() if r["community"] == name}):
                n = reencrypt_collection(catalog, store, coll, name)
                console.print(f"{coll}: {n} objects re-encrypted under a new data key", highlight=False)
        n = store.keys.rotate(name)
        console.print(f"{name}: new community key; {n} data keys re-wrapped; old key destroyed", highlight=False)


@keys_app.command("seal", help="Encrypt collections that must be encrypted (restricted, or holding protocol "
                               "labels) but still have objects in the clear, e.g. after a steward restricted "
                               "them.\n\nExample: hearth keys seal")
@user_errors
def seal(workspace: WorkspaceOpt = None) -> None:
    """Seal restricted collections."""
    from rich.markup import escape
    from sqlalchemy import select

    from hearthkit.catalog.models import Collection
    from hearthkit.cli.common import err_console
    from hearthkit.ingest.sealing import DerivedNotSealed, collection_must_seal, seal_collection
    from hearthkit.store.vault import workspace_store

    ws, catalog = open_catalog(workspace)
    store = workspace_store(ws)
    with catalog.session() as s:
        names = [c.name for c in s.scalars(select(Collection).order_by(Collection.name)) if collection_must_seal(s, c)]
    failed = 0
    for name in names:
        try:
            objects, texts = seal_collection(catalog, store, name)
        except DerivedNotSealed as exc:  # one collection's unreadable derived file never stops the others' sealing
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            failed += 1
            continue
        console.print(f"{name}: {objects} objects encrypted, transcripts of {texts} items sealed", highlight=False)
    if not names:
        console.print("no collection needs encryption")
    if failed:
        raise typer.Exit(1)
