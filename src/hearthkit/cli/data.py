"""`hearth data …` and `hearth demo-data …`: bring archives into the catalog."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress

from hearthkit.cli.common import JsonOpt, WorkspaceOpt, console, open_catalog, print_json, user_errors
from hearthkit.cli.common import table as cli_table


def _report_problems(problems: list[tuple[str, str]]) -> None:
    """One line per rejected file, with its reason (every importer reports bad input the same way)."""
    for name, reason in problems:
        console.print(f"[yellow]skipped[/] {name}: {reason}", highlight=False, soft_wrap=True)


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
    for where, what in report.notes:  # normalisations made and rows that named nothing: said, not refused
        console.print(f"[cyan]note[/] {where}: {what}", highlight=False, soft_wrap=True)
    _report_problems(report.problems)
    sealed = " (stored encrypted)" if report.sealed else ""
    console.print(f"collection {report.collection}{sealed}: {report.imported} imported, {report.unchanged} already "
                  f"present, {len(report.problems)} skipped", highlight=False)
    console.print(f"licence: {report.licence or '–'}\ncitation: {report.citation or '–'}", highlight=False,
                  soft_wrap=True)
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
    from hearthkit.store.vault import workspace_store

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
        report = import_annotations(catalog, workspace_store(ws), info, anns, rec, f, speaker)
        _report_problems(report.problems)
        problems += len(report.problems)
        console.print(f"{f.name} -> collection {report.collection}: {report.imported} segments imported, "
                      f"{report.corrected} corrected, {report.unchanged} unchanged, {len(report.problems)} skipped",
                      highlight=False)
    if problems:
        raise typer.Exit(1)


@data_app.command("ls", help="List collections with item counts, consent and labels.\n\nExample: hearth data ls --json")
@user_errors
def ls(as_json: JsonOpt = False, workspace: WorkspaceOpt = None) -> None:
    """List collections."""
    from sqlalchemy import func, select

    from hearthkit.catalog.models import Collection, Consent, Item, Label

    _, catalog = open_catalog(workspace)
    rows = []
    with catalog.session() as s:
        for c in s.scalars(select(Collection).order_by(Collection.name)):
            n, dur = s.execute(select(func.count(Item.id), func.sum(Item.duration_s))
                               .where(Item.collection_id == c.id)).one()
            nc = s.scalar(select(func.count(Consent.id)).where(Consent.collection_id == c.id))
            labs = s.execute(select(Label.key, func.count(Label.id)).join(Item, Label.item_id == Item.id)
                             .where(Item.collection_id == c.id).group_by(Label.key)).all()
            rows.append({"collection": c.name, "community": c.community, "items": n,
                         "hours": round((dur or 0) / 3600, 4), "consent_records": nc,
                         "labels": {k: m for k, m in labs}})
    if as_json:
        print_json({"collections": rows})
        return
    table = cli_table("collection", "community", "items", "hours", "consent records", "labels")
    for r in rows:
        table.add_row(r["collection"], r["community"], str(r["items"]), f"{r['hours']:.2f}",
                      str(r["consent_records"]), ", ".join(f"{k}×{m}" for k, m in r["labels"].items()) or "–")
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


@data_app.command("import-geotiff", help="Import bi-temporal GeoTIFF scenes (OSCD layout: <scene>/imgs_1|imgs_2/"
                                         "*_B02|B03|B04|B08.tif, <scene>/cm/<scene>-cm.tif). CRS, bounds and band "
                                         "names go into each item; licence, citation and labels into the "
                                         "collection (archive.yaml, or the OSCD terms when there is none). Bad files "
                                         "are reported one per line and their scene skipped; the catalog changes "
                                         "in one transaction.\n\n"
                                         "Example: hearth data import-geotiff ../shared/data/oscd --layout oscd")
@user_errors
def import_geotiff(
    folder: Annotated[Path, typer.Argument(help="Folder of scene folders.")],
    layout: Annotated[str, typer.Option(help="Folder layout: oscd.")] = "oscd",
    workspace: WorkspaceOpt = None,
) -> None:
    """Import a folder of GeoTIFF scenes."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Collection, Label
    from hearthkit.ingest.geotiff import import_geotiff_folder
    from hearthkit.store.vault import workspace_store

    ws, catalog = open_catalog(workspace)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("reading scenes", total=None)
        report = import_geotiff_folder(catalog, workspace_store(ws), folder, layout,
                                       progress=lambda i, n: bar.update(task, completed=i, total=n))
    _report_problems(report.problems)
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == report.collection))
        labels = [lab.key for lab in s.scalars(select(Label).where(Label.collection_id == coll.id))]
        console.print(f"licence: {coll.licence or '–'}", highlight=False, soft_wrap=True)
        console.print(f"citation: {coll.citation or '–'}", highlight=False, soft_wrap=True)
        console.print(f"collection labels: {', '.join(labels) or '–'}", highlight=False)
    console.print(f"collection {report.collection}: {report.imported} raster items imported, "
                  f"{report.unchanged} already present, {len(report.problems)} problems")
    if report.problems and not report.imported and not report.unchanged:
        raise typer.Exit(1)


@demo_app.command("geo", help="Write synthetic georeferenced scenes (EPSG:32633, 10 m, bands B02 B03 B04 B08) "
                              "with forest, water and bare land, two dates, inserted clearings and new water, "
                              "exact change masks and land-cover maps, in the OSCD layout.\n\n"
                              "Example: hearth demo-data geo ./scenes --scenes 8 --size 128")
@user_errors
def geo(
    folder: Annotated[Path, typer.Argument(help="Where to write the scenes.")],
    scenes: Annotated[int, typer.Option(help="Number of scene pairs.")] = 8,
    size: Annotated[int, typer.Option(help="Scene side in pixels (10 m each).")] = 128,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write the synthetic scenes."""
    from hearthkit.demo.geo import make_geo_scenes

    truths = make_geo_scenes(folder, scenes, size, seed)
    for t in truths:
        console.print(f"{t.name}: {len(t.events)} change events, {t.changed_ha:.2f} ha changed", highlight=False)
    console.print(f"wrote {len(truths)} scenes to {folder}")


@data_app.command("import-parallel",
                  help="Import line-aligned parallel text: SPLIT.SRC / SPLIT.TGT files (train, dev, test), with an "
                       "optional line-aligned SPLIT.meta.csv (domain, variant, document, labels, labels.LANG). "
                       "Each side of each pair becomes one text item; collection, licence, citation and collective "
                       "consent come from archive.yaml in the folder or from the options. Bad input (not UTF-8, "
                       "unequal line counts) stops the import with nothing written.\n\n"
                       "Example: hearth data import-parallel ./nahuatl-spanish --src es --tgt nah --collection axolotl "
                       "--community 'Nahua communities' --purpose research --licence research-only "
                       "--citation 'Gutierrez-Vasques et al. 2016'")
@user_errors
def import_parallel_(
    folder: Annotated[Path, typer.Argument(help="Folder with train.SRC, train.TGT, dev.SRC, dev.TGT …")],
    src: Annotated[str, typer.Option(help="Source language code (file suffix), e.g. es.")],
    tgt: Annotated[str, typer.Option(help="Target language code (file suffix), e.g. nah.")],
    collection: Annotated[str | None, typer.Option(help="Collection name (else archive.yaml).")] = None,
    community: Annotated[str | None, typer.Option(help="Community holding authority over the collection.")] = None,
    licence: Annotated[str | None, typer.Option(help="Licence or terms of use.")] = None,
    citation: Annotated[str | None, typer.Option(help="How to cite the corpus.")] = None,
    purpose: Annotated[list[str] | None, typer.Option(help="Purpose the community consented to (repeatable).")] = None,
    consent_by: Annotated[str | None, typer.Option(help="Who gave the collective consent.")] = None,
    consent_evidence: Annotated[str | None, typer.Option(help="Where the consent is documented.")] = None,
    label: Annotated[list[str] | None, typer.Option(help="Label key for the whole collection (repeatable).")] = None,
    corpus: Annotated[str | None, typer.Option(help="Corpus name in item ids (default: folder name).")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Import a parallel text folder."""
    from datetime import date

    from pydantic import ValidationError

    from hearthkit.errors import HearthError
    from hearthkit.ingest.archive import ArchiveInfo, read_archive_info
    from hearthkit.ingest.parallel_text import import_parallel
    from hearthkit.store.vault import workspace_store

    if (folder / "archive.yaml").is_file():
        info = read_archive_info(folder)
    else:
        if not (collection and community and purpose):
            raise HearthError(f"{folder}: no archive.yaml; give --collection, --community and at least one --purpose")
        try:
            info = ArchiveInfo.model_validate({
                "collection": {"name": collection, "community": community, "licence": licence, "citation": citation},
                "collective_consent": [{"subject": community, "given_by": consent_by or community,
                                        "given_at": date.today(), "purposes": purpose,
                                        "evidence": consent_evidence}]})
        except ValidationError as exc:
            err = exc.errors()[0]
            raise HearthError(f"--{err['loc'][-1] if err['loc'] else 'purpose'}: {err['msg']}") from None
    ws, catalog = open_catalog(workspace)
    with console.status("reading parallel text"):
        report = import_parallel(catalog, workspace_store(ws), folder, src, tgt, info, corpus, label)
    _report_problems(report.problems)
    console.print(f"collection {report.collection}: {report.imported} text items imported "
                  f"({report.imported // 2} pairs), {report.unchanged} already present, "
                  f"{len(report.problems)} problems")


@demo_app.command("parallel", help="Write a synthetic Spanish <-> invented-language parallel corpus (train/dev, "
                                   "domains, a few tk:secret_sacred lines) for `hearth data import-parallel`.\n\n"
                                   "Example: hearth demo-data parallel ./toy --pairs 400")
@user_errors
def parallel(
    folder: Annotated[Path, typer.Argument(help="Where to write the corpus.")],
    pairs: Annotated[int, typer.Option(help="Training pairs.")] = 400,
    dev: Annotated[int, typer.Option(help="Dev pairs.")] = 40,
    secret: Annotated[int, typer.Option(help="Training pairs whose xx side is tk:secret_sacred.")] = 5,
) -> None:
    """Write the demo parallel corpus."""
    from hearthkit.demo.parallel import make_parallel_corpus

    make_parallel_corpus(folder, pairs, dev, secret=secret)
    console.print(f"wrote {pairs} training and {dev} dev pairs (es, xx) to {folder}")
