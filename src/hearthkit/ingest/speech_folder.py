"""Import a folder of recordings + same-named transcripts + metadata.csv + archive.yaml."""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.vocabulary import LABELS
from hearthkit.ingest.archive import ArchiveInfo, read_archive_info
from hearthkit.ingest.audio import AUDIO_SUFFIXES, BadAudio, probe
from hearthkit.store.cas import ContentStore

TRANSCRIPT_SUFFIX = ".txt"


@dataclass
class ImportReport:
    """What an import did: counts, plus one (file, reason) per rejected file."""

    collection: str
    imported: int = 0
    unchanged: int = 0
    problems: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Pending:
    external_id: str
    digest: str
    size: int
    media_type: str
    duration_s: float
    sample_rate: int
    text: str
    meta: dict
    labels: list[str]


def _read_metadata(folder: Path, report: ImportReport) -> dict[str, dict]:
    """Rows of metadata.csv by file id; rows that point outside the archive are rejected."""
    path = folder / "metadata.csv"
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise HearthError(f"{path}: not UTF-8 text; re-save the sheet as UTF-8 CSV") from None
    rows: dict[str, dict] = {}
    for n, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        name = (row.get("file") or "").strip()
        if not name:
            raise HearthError(f"{path}: line {n}: column 'file' is empty or missing")
        if "/" in name or "\\" in name or name.startswith("."):
            report.problems.append((f"metadata.csv:{n}", f"file {name!r} is a path, not a file name in the archive"))
            continue
        rows[Path(name).stem] = row
    return rows


def normalise_transcript(text: str) -> str:
    """NFC, one line, single spaces: the form transcripts are stored in."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _read_one(audio: Path, row: dict | None, store: ContentStore, accept_truncated: bool) -> _Pending:
    """Validate one recording and its transcript, store its bytes; raise ValueError with the reason."""
    tpath = audio.with_suffix(TRANSCRIPT_SUFFIX)
    if not tpath.is_file():
        raise ValueError(f"no transcript {tpath.name}; add it or move the recording out of the archive")
    try:
        text = normalise_transcript(tpath.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"transcript {tpath.name} is not UTF-8 (byte {exc.start}); re-save it as UTF-8") from None
    if not text:
        raise ValueError(f"transcript {tpath.name} is empty")
    data = audio.read_bytes()
    try:
        info = probe(data, accept_truncated=accept_truncated)
    except BadAudio as exc:
        raise ValueError(str(exc)) from None
    labels = []
    meta: dict = {}
    if row is not None:
        labels = [k.strip() for k in (row.get("labels") or "").split(";") if k.strip()]
        for key in labels:
            if key not in LABELS:
                raise ValueError(f"unknown label {key!r} in metadata.csv; use a Local Contexts key")
        meta = {k: v for k, v in row.items() if k not in {"file", "labels"} and v not in (None, "")}
    digest = store.put(data)
    return _Pending(audio.stem, digest, len(data), AUDIO_SUFFIXES[audio.suffix.lower()], info.duration_s,
                    info.sample_rate, text, meta, labels)


def import_speech_folder(
    catalog: Catalog, store: ContentStore, folder: Path, accept_truncated: bool = False, progress=None
) -> ImportReport:
    """Import FOLDER; bad files are reported and skipped; the catalog changes in one transaction."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HearthError(f"{folder}: not a folder")
    info = read_archive_info(folder)
    report = ImportReport(collection=info.collection.name)
    meta = _read_metadata(folder, report)
    audio_files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    stems = {p.stem for p in audio_files}
    for t in sorted(folder.glob(f"*{TRANSCRIPT_SUFFIX}")):
        if t.stem not in stems:
            report.problems.append((t.name, "transcript with no recording of the same name"))
    pending: list[_Pending] = []
    seen: set[str] = set()
    for n, audio in enumerate(audio_files):
        if progress:
            progress(n, len(audio_files))
        if audio.stem in seen:
            report.problems.append((audio.name, f"duplicate id {audio.stem!r} (two recordings share a name)"))
            continue
        seen.add(audio.stem)
        row = meta.get(audio.stem)
        if meta and row is None:
            report.problems.append((audio.name, "no row in metadata.csv; add its speaker, dialect and gender"))
            continue
        try:
            pending.append(_read_one(audio, row, store, accept_truncated))
        except ValueError as exc:
            report.problems.append((audio.name, str(exc)))
    _commit(catalog, info, pending, report)
    audit.record(catalog, "import", collection=report.collection, folder=str(folder), imported=report.imported,
                 unchanged=report.unchanged, skipped=len(report.problems))
    return report


def _commit(catalog: Catalog, info: ArchiveInfo, pending: list[_Pending], report: ImportReport) -> None:
    """Write collection, consent, items and labels in one transaction (all or nothing)."""
    c = info.collection
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == c.name))
        if coll is None:
            coll = Collection(name=c.name, community=c.community, licence=c.licence, citation=c.citation,
                              restricted=c.restricted)
            s.add(coll)
            s.flush()
        elif coll.community != c.community:
            raise HearthError(f"archive.yaml: collection {c.name!r} belongs to {coll.community}, not {c.community}")
        existing = {(x.scope, x.subject, x.given_by, x.given_at.date(), tuple(x.purposes))
                    for x in s.scalars(select(Consent).where(Consent.collection_id == coll.id))}
        for scope, entries in (("collective", info.collective_consent), ("individual", info.individual_consent)):
            for e in entries:
                purposes = [p.value for p in e.purposes]
                if (scope, e.subject, e.given_by, e.given_at, tuple(purposes)) in existing:
                    continue
                s.add(Consent(collection_id=coll.id, scope=scope, subject=e.subject, given_by=e.given_by,
                              given_at=datetime(e.given_at.year, e.given_at.month, e.given_at.day, tzinfo=UTC),
                              purposes=purposes, evidence=e.evidence,
                              expires_at=datetime(e.expires_at.year, e.expires_at.month, e.expires_at.day,
                                                  tzinfo=UTC) if e.expires_at else None))
        have = {x.external_id: x.content_hash for x in s.scalars(select(Item).where(Item.collection_id == coll.id))}
        for p in pending:
            if p.external_id in have:
                if have[p.external_id] == p.digest:
                    report.unchanged += 1
                else:
                    report.problems.append((p.external_id, "already imported with different content; "
                                            "give the new version a new name"))
                continue
            item = Item(collection_id=coll.id, external_id=p.external_id, kind="audio", content_hash=p.digest,
                        size_bytes=p.size, media_type=p.media_type, duration_s=p.duration_s,
                        sample_rate=p.sample_rate, speaker=p.meta.get("speaker"), dialect=p.meta.get("dialect"),
                        gender=p.meta.get("gender"), text=p.text, meta=p.meta)
            s.add(item)
            s.flush()
            for key in p.labels:
                s.add(Label(item_id=item.id, key=key, community=c.community))
            report.imported += 1
