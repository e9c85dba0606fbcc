"""`hearth data …` and `hearth demo-data …`: bring archives into the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress
from rich.table import Table

from hearthkit.cli.common import WorkspaceOpt, console, open_catalog, user_errors

data_app = typer.Typer(help="Import and list archive items.\n\nExample: hearth data import ./archive",
                       no_args_is_help=True)
demo_app = typer.Typer(help="Write synthetic demo archives.\n\nExample: hearth demo-data speech ./archive",
                       no_args_is_help=True)


@data_app.command("import", help=(
    "Import a folder of recordings with same-named text files (a transcript, and translations per language), "
    "a metadata sheet (CSV/YAML) and archive.yaml (collection, consent, layout). Bad files are reported one per "
    "line and skipped; each batch of items is one transaction, so an interrupted import is finished by running "
    "it again. Restricted collections are stored encrypted.\n\n"
    "Example: hearth data import ./archive --info archive.yaml"))
@user_errors
def import_(
    folder: Annotated[Path, typer.Argument(help="Archive folder.")],
    info: Annotated[Path | None, typer.Option(help="archive.yaml to use instead of FOLDER/archive.yaml "
                                                   "(for archives you cannot write to).")] = None,
    collection: Annotated[str | None, typer.Option(help="Collection name, overriding archive.yaml's (e.g. one "
                                                       "archive.yaml for a corpus's train and dev folders).")] = None,
    accept_truncated: Annotated[bool, typer.Option(help="Import truncated recordings as they are.")] = False,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Items per transaction (default: layout.batch_size "
                                                               "in archive.yaml, else 200).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import an archive folder."""
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.store.vault import workspace_store

    ws, catalog = open_catalog(workspace)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("reading recordings", total=None)
        report = import_speech_folder(
            catalog, workspace_store(ws), folder, accept_truncated,
            progress=lambda i, n: bar.update(task, completed=i, total=n), info_path=info, batch_size=batch_size,
            collection=collection,
            on_batch=lambda done, n: console.print(f"saved {done} new items (of {n} recordings)", highlight=False))
    for name, reason in report.problems:
        console.print(f"[yellow]skipped[/] {name}: {reason}", highlight=False, soft_wrap=True)
    sealed = " (stored encrypted)" if report.sealed else ""
    console.print(f"collection {report.collection}{sealed}: {report.imported} imported, {report.unchanged} already "
                  f"present, {len(report.problems)} skipped", highlight=False)
    console.print(f"licence: {report.licence or '–'}\ncitation: {report.citation or '–'}", highlight=False,
                  soft_wrap=True)
    if report.problems and not report.imported and not report.unchanged:
        raise typer.Exit(1)


@data_app.command("ls", help="List collections with item counts, consent and labels.\n\nExample: hearth data ls")
@user_errors
def ls(workspace: WorkspaceOpt = None) -> None:
    """List collections."""
    from sqlalchemy import func, select

    from hearthkit.catalog.models import Collection, Consent, Item, Label

    _, catalog = open_catalog(workspace)
    table = Table("collection", "community", "items", "hours", "consent records", "labels")
    with catalog.session() as s:
        for c in s.scalars(select(Collection).order_by(Collection.name)):
            n, dur = s.execute(select(func.count(Item.id), func.sum(Item.duration_s))
                               .where(Item.collection_id == c.id)).one()
            nc = s.scalar(select(func.count(Consent.id)).where(Consent.collection_id == c.id))
            labs = s.execute(select(Label.key, func.count(Label.id)).join(Item, Label.item_id == Item.id)
                             .where(Item.collection_id == c.id).group_by(Label.key)).all()
            table.add_row(c.name, c.community, str(n), f"{(dur or 0) / 3600:.2f}", str(nc),
                          ", ".join(f"{k}×{m}" for k, m in labs) or "–")
    console.print(table)


@demo_app.command("speech", help="Write a synthetic te reo Māori oral-history archive (espeak-ng voices, 16 kHz) "
                                 "with consent and labels that exercise the policy.\n\n"
                                 "Example: hearth demo-data speech ./archive --sentences 40")
@user_errors
def speech(
    folder: Annotated[Path, typer.Argument(help="Where to write the archive.")],
    sentences: Annotated[int, typer.Option(help="Distinct sentences; each is read by every voice.")] = 110,
    voices: Annotated[int, typer.Option(help="Voices (4-6), split over two dialect groups.")] = 6,
    secret: Annotated[int, typer.Option(help="Recordings labelled tk:secret_sacred.")] = 6,
) -> None:
    """Write the demo speech archive."""
    from hearthkit.demo.speech import make_speech_archive

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("synthesising speech", total=None)
        n = make_speech_archive(folder, sentences, voices, secret,
                                progress=lambda i, t: bar.update(task, completed=i, total=t))
    console.print(f"wrote {n} recordings to {folder}")


@data_app.command("card", help="Write a Croissant JSON-LD description of a collection (with Responsible-AI fields) and "
                               "its item index CSV.\n\nExample: hearth data card demo-korero -o cards/")
@user_errors
def card(collection: Annotated[str, typer.Argument(help="Collection name.")],
         output: Annotated[Path, typer.Option("-o", "--output", help="Folder to write into.")] = Path("."),
         workspace: WorkspaceOpt = None) -> None:
    """Describe a collection in Croissant."""
    from hearthkit.lineage.croissant import collection_card

    _, catalog = open_catalog(workspace)
    with catalog.session() as s:
        path = collection_card(s, collection, output)
    console.print(f"wrote {path}")
