"""`hearth base …`: pretrained base models (local Hugging Face folders) registered with their terms."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, user_errors
from hearthkit.cli.common import table as cli_table

base_app = typer.Typer(help="Pretrained base models a run may fine-tune (`model.base: NAME`), with their licence, "
                            "source and labels; nothing is ever downloaded.\n\nExample: hearth base list",
                       no_args_is_help=True)


def _row(ref) -> dict:
    from hearthkit.lineage.base import base_restrictions

    return {"name": ref.name, "architecture": ref.architecture, "licence": ref.licence, "source": ref.source,
            "labels": list(ref.labels), "training_data": ref.training_data, "content_hash": ref.content_hash,
            "path": str(ref.path), "restrictions": base_restrictions(ref)}


@base_app.command("add", help="Register a local Hugging Face model folder (config.json + weights + tokenizer or "
                              "processor files) as a base model, by content hash, with its terms. Only a steward "
                              "(--by) or the workspace owner (--as-owner); audited. A folder that would need a "
                              "download is refused.\n\n"
                              "Example: hearth base add ./mms-300m --name mms-300m --licence CC-BY-NC-4.0 --source "
                              "https://huggingface.co/facebook/mms-300m --training-data 'MMS-lab, 1,400 languages' "
                              "--by aroha")
@user_errors
def add(
    folder: Annotated[Path, typer.Argument(help="The model folder (as `save_pretrained` writes it).")],
    name: Annotated[str, typer.Option(help="Name runs use for it (`model.base: NAME`).")],
    licence: Annotated[str, typer.Option(help="Its licence as the source states it, e.g. CC-BY-NC-4.0, apache-2.0; "
                                              "an NC or unknown licence makes derived models non-commercial.")],
    source: Annotated[str, typer.Option(help="Where the weights came from: a URL or a citation.")],
    label: Annotated[list[str] | None, typer.Option(help="A Local Contexts label key its derived models inherit "
                                                         "(e.g. bc:non_commercial); repeat for more.")] = None,
    training_data: Annotated[str | None, typer.Option(help="What it was trained on, as declared by its makers; "
                                                           "left out, derived models carry a notice.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Steward registering it.")] = None,
    as_owner: Annotated[bool, typer.Option("--as-owner", help="Register it as the workspace owner (checked "
                                                             "against the OS user).")] = False,
    note: Annotated[str | None, typer.Option(help="Why it may be used here.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Register a base model folder."""
    from hearthkit.lineage.base import add_base, base_restrictions

    ws, catalog = open_catalog(workspace)
    owner = ws.require_owner("register a base model") if as_owner else None
    console.print(f"hashing {folder} …", highlight=False)
    ref = add_base(catalog, folder, name=name, licence=licence, source=source, labels=tuple(label or ()),
                   training_data=training_data, by=by, owner=owner, note=note)
    console.print(f"registered base {ref.name} ({ref.architecture}, sha256 {ref.content_hash[:12]}…); derived "
                  f"models inherit: {', '.join(base_restrictions(ref)) or 'nothing'}", highlight=False)


@base_app.command("list", help="List registered base models with licence and inherited restrictions.\n\n"
                               "Example: hearth base list --json")
@user_errors
def list_(as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List base models."""
    from hearthkit.lineage.base import list_bases

    _, catalog = open_catalog(workspace)
    rows = [_row(r) for r in list_bases(catalog)]
    if as_json:
        print_json({"bases": rows})
        return
    if not rows:
        console.print("no base model registered; add one with `hearth base add FOLDER --name N --licence L "
                      "--source S --by STEWARD`")
        return
    table = cli_table("base", "architecture", "licence", "derived models inherit", "sha256")
    for r in rows:
        table.add_row(r["name"], r["architecture"], r["licence"], ", ".join(r["restrictions"]) or "–",
                      r["content_hash"][:12] + "…")
    console.print(table)


@base_app.command("show", help="Show one base model: folder, hash, terms, what derived models inherit, and "
                               "whether the folder still holds the registered bytes.\n\n"
                               "Example: hearth base show mms-300m --croissant lineage/")
@user_errors
def show(name: Annotated[str, typer.Argument(help="Base model name.")], as_json: JsonOpt = False,
         croissant: Annotated[Path | None, typer.Option(help="Also write NAME.croissant.json (its pretraining "
                                                              "data, as declared) into this folder.")] = None,
         workspace: WorkspaceOpt = None) -> None:
    """Show a base model."""
    from hearthkit.errors import HearthError
    from hearthkit.lineage.base import base_notices, get_base, verify_base

    _, catalog = open_catalog(workspace)
    ref = get_base(catalog, name)
    if croissant is not None:
        from hearthkit.lineage.croissant import base_card

        path = base_card(ref, croissant)
        if not as_json:
            console.print(f"wrote {path}", highlight=False)
    try:
        verify_base(ref)
        state = "intact (the registered bytes)"
    except HearthError as exc:
        state = f"NOT USABLE: {exc}"
    if as_json:
        print_json({**_row(ref), "folder_state": state, "notices": base_notices(ref)})
        return
    r = _row(ref)
    console.print(f"base {ref.name} ({ref.architecture})", highlight=False)
    console.print(f"  folder {ref.path}: {state}", highlight=False)
    console.print(f"  sha256 {ref.content_hash}", highlight=False)
    console.print(f"  licence {ref.licence}; source {ref.source}", highlight=False)
    console.print(f"  labels: {', '.join(ref.labels) or 'none'}", highlight=False)
    console.print(f"  training data: {ref.training_data or 'undeclared'}", highlight=False)
    console.print(f"  derived models inherit: {', '.join(r['restrictions']) or 'nothing'}", highlight=False)
    for n in base_notices(ref):
        console.print(f"  notice: {n}", highlight=False)
