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


@data_app.command("import", help="Import a folder of recordings, same-named .txt transcripts, metadata.csv and "
                                 "archive.yaml (collection + consent). Bad files are reported one per line and "
                                 "skipped; the catalog changes in one transaction.\n\n"
                                 "Example: hearth data import ./archive")
@user_errors
def import_(
    folder: Annotated[Path, typer.Argument(help="Archive folder.")],
    accept_truncated: Annotated[bool, typer.Option(help="Import truncated recordings as they are.")] = False,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import an archive folder."""
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.store.cas import ContentStore

    ws, catalog = open_catalog(workspace)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("reading recordings", total=None)
        report = import_speech_folder(catalog, ContentStore(ws.store_dir), folder, accept_truncated,
                                      progress=lambda i, n: bar.update(task, completed=i, total=n))
    for name, reason in report.problems:
        console.print(f"[yellow]skipped[/] {name}: {reason}", highlight=False, soft_wrap=True)
    console.print(f"collection {report.collection}: {report.imported} imported, {report.unchanged} already present, "
                  f"{len(report.problems)} skipped")
    if report.problems and not report.imported and not report.unchanged:
        raise typer.Exit(1)


@data_app.command("import-eaf", help="Import time-aligned transcripts as training items: ELAN .eaf or Praat "
                                     ".TextGrid files (e.g. drafts from `hearth transcribe`, corrected in ELAN). "
                                     "Each annotated segment becomes an item holding its cut audio; consent and "
                                     "collection come from archive.yaml; re-importing a corrected file updates the "
                                     "transcripts of the same segments.\n\n"
                                     "Example: hearth data import-eaf interview.eaf --archive archive.yaml")
@user_errors
def import_eaf(
    files: Annotated[list[Path], typer.Argument(help=".eaf or .TextGrid files.")],
    archive: Annotated[Path | None, typer.Option(help="archive.yaml with collection and consent (default: the one "
                                                      "beside the first file).")] = None,
    audio: Annotated[Path | None, typer.Option(help="The recording (default: named in the file, or same name "
                                                    "beside it).")] = None,
    tier: Annotated[list[str] | None,
                    typer.Option(help="Tier(s) to import (default: every time-aligned tier).")] = None,
    speaker: Annotated[str | None, typer.Option(help="Speaker of tiers that name no participant.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import ELAN / Praat files."""
    from hearthkit.errors import HearthError
    from hearthkit.ingest.archive import read_archive_info
    from hearthkit.ingest.elan import read_eaf
    from hearthkit.ingest.segments import find_audio, import_annotations
    from hearthkit.ingest.textgrid import read_textgrid
    from hearthkit.store.cas import ContentStore

    ws, catalog = open_catalog(workspace)
    yaml_path = archive or files[0].parent / "archive.yaml"
    if not yaml_path.is_file():
        raise HearthError(f"{yaml_path}: no archive.yaml (collection and consent); pass --archive")
    info = read_archive_info(yaml_path.parent) if yaml_path.name == "archive.yaml" else None
    if info is None:
        raise HearthError(f"{yaml_path}: the archive description must be named archive.yaml")
    # Parse every file first: a malformed or hostile file stops the import before anything is stored.
    parsed = []
    for f in files:
        if f.suffix.lower() == ".eaf":
            anns, media = read_eaf(f, tier)
        elif f.suffix.lower() == ".textgrid":
            anns, media = read_textgrid(f, tier), []
        else:
            raise HearthError(f"{f}: not an .eaf or .TextGrid file")
        parsed.append((f, anns, find_audio(f, media, audio)))
    problems = 0
    for f, anns, rec in parsed:
        report = import_annotations(catalog, ContentStore(ws.store_dir), info, anns, rec, f, speaker)
        for name, reason in report.problems:
            console.print(f"[yellow]skipped[/] {name}: {reason}", highlight=False, soft_wrap=True)
        problems += len(report.problems)
        console.print(f"{f.name} -> collection {report.collection}: {report.imported} segments imported, "
                      f"{report.corrected} corrected, {report.unchanged} unchanged, {len(report.problems)} skipped",
                      highlight=False)
    if problems:
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
