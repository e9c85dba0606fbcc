"""Import a folder of recordings + same-named text files per language + a metadata sheet + archive.yaml."""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item, Label
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.ingest.archive import ArchiveInfo, ConsentEntry, LayoutConfig, collection_with_consent, read_archive_info
from hearthkit.ingest.audio import AUDIO_SUFFIXES, BadAudio, probe
from hearthkit.ingest.sealing import collection_must_seal, must_seal, seal_collection, set_item_words
from hearthkit.ingest.sheet import SHEET_NAMES, Sheet, SheetRow, read_sheet
from hearthkit.store.cas import ContentStore, sha256_bytes, sweep_partial
from hearthkit.store.vault import Store, as_store

TRANSCRIPT_SUFFIX = ".txt"


@dataclass
class ImportReport:
    """What an import did: counts, plus one (file, reason) per rejected file."""

    collection: str
    licence: str | None = None
    citation: str | None = None
    imported: int = 0
    unchanged: int = 0
    sealed: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # e.g. a label key read in its exact spelling


@dataclass
class Recording:
    """One id in the folder: its audio file and its text files by suffix."""

    id: str
    audio: Path
    texts: dict[str, Path] = field(default_factory=dict)


@dataclass
class _Pending:
    external_id: str
    digest: str
    size: int
    media_type: str
    duration_s: float
    sample_rate: int
    text: str | None
    meta: dict
    labels: list[str]
    consent: dict | None


def normalise_transcript(text: str) -> str:
    """NFC, one line, single spaces: the form transcripts are stored in."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def _suffix_of(name: str, suffixes: list[str]) -> str | None:
    return next((s for s in suffixes if name.endswith(s) and len(name) > len(s)), None)


def scan_folder(folder: Path, layout: LayoutConfig, problems: list[tuple[str, str]]) -> list[Recording]:
    """Recordings of FOLDER with their text files; odd entries (links out, duplicates, orphans) go to PROBLEMS."""
    root = folder.resolve()
    text_suffixes = sorted({s for s in (layout.transcript, *layout.translations.values()) if s}, key=len, reverse=True)
    audio: dict[str, list[Path]] = {}
    texts: dict[str, dict[str, Path]] = {}
    rejected: set[str] = set()
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or p.name in ("archive.yaml", *SHEET_NAMES, layout.sheet):
            continue
        a_suffix = _suffix_of(p.name.lower(), list(AUDIO_SUFFIXES))
        t_suffix = None if a_suffix else _suffix_of(p.name, text_suffixes)
        if a_suffix is None and t_suffix is None:
            continue  # not ours (e.g. .stm alignments, notes)
        item_id = p.name[: -len(a_suffix or t_suffix)]
        if p.is_symlink() and root not in p.resolve().parents:
            problems.append((p.name, f"symbolic link pointing outside the archive (to {p.resolve()}); "
                                     "copy the file into the archive instead"))
            rejected.add(item_id)
            continue
        if not p.is_file():
            problems.append((p.name, "not a regular file"))
            rejected.add(item_id)
            continue
        if a_suffix:
            audio.setdefault(item_id, []).append(p)
        else:
            texts.setdefault(item_id, {})[t_suffix] = p
    out = []
    for item_id, files in sorted(audio.items()):
        if item_id in rejected:
            continue
        if len(files) > 1:
            names = ", ".join(f.name for f in files)
            for f in files:
                problems.append((f.name, f"duplicate id {item_id!r}: several recordings share it ({names}); "
                                         "rename or remove all but one"))
            continue
        out.append(Recording(item_id, files[0], texts.get(item_id, {})))
    for item_id, by_suffix in sorted(texts.items()):
        if item_id not in audio and item_id not in rejected:
            for p in sorted(by_suffix.values()):
                problems.append((p.name, "text with no recording of the same name"))
    return out


def _read_text(path: Path) -> str:
    try:
        return normalise_transcript(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name} is not UTF-8 (byte {exc.start}); re-save it as UTF-8") from None


def _resample_flac(data: bytes, target: int) -> bytes:
    """Decode DATA, resample to TARGET Hz (mono), encode as 16-bit FLAC."""
    import soundfile as sf

    from hearthkit.ingest.audio import decode

    buf = io.BytesIO()
    sf.write(buf, decode(data, target), target, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


class _Importer:
    """One import: state shared by the per-file steps."""

    def __init__(self, catalog: Catalog, store: Store, folder: Path, info: ArchiveInfo, accept_truncated: bool):
        self.catalog, self.store, self.folder, self.info = catalog, store, folder, info
        self.layout = info.layout
        self.accept_truncated = accept_truncated
        self.pattern = re.compile(self.layout.name_pattern) if self.layout.name_pattern else None
        self.report = ImportReport(info.collection.name, info.collection.licence, info.collection.citation)
        self.have: dict[str, str] = {}  # external id -> hash of the source file, already in the catalog
        self.by_hash: dict[str, str] = {}  # source hash -> external id (same content -> same item)
        self.seal_for: tuple[str, str] | None = None
        self.batches = 0

    def metadata(self, rec: Recording, rows: list[SheetRow]) -> tuple[dict, list[str], dict | None]:
        """Meta from the name pattern, then the sheet's rows (later rows win); labels; individual consent."""
        meta: dict = {}
        if self.pattern is not None:
            m = self.pattern.search(rec.id)
            if m is None:
                raise ValueError(f"name does not match layout.name_pattern {self.layout.name_pattern!r}")
            meta.update({k: v for k, v in m.groupdict().items() if v is not None})
        labels = list(self.layout.labels)
        protocols: list[str] = []
        consent = None
        for row in rows:
            meta.update(row.values)
            labels += [k for k in row.labels if k not in labels]
            protocols += [p for p in row.protocols if p not in protocols]
            consent = row.consent or consent
        if protocols:
            meta["protocols"] = protocols
        return meta, labels, consent

    def read_one(self, rec: Recording, rows: list[SheetRow]) -> _Pending | None:
        """Validate REC and store its audio; None if already imported; ValueError with the reason if bad."""
        lay = self.layout
        text = None
        if lay.transcript:
            tpath = rec.texts.get(lay.transcript)
            if tpath is None:
                raise ValueError(f"no transcript {rec.id}{lay.transcript}; add it or move the recording out")
            text = _read_text(tpath)
            if not text:
                raise ValueError(f"transcript {tpath.name} is empty")
        translations = {lang: _read_text(rec.texts[suf]) for lang, suf in sorted(lay.translations.items())
                        if suf in rec.texts}
        meta, labels, consent = self.metadata(rec, rows)
        if translations:
            meta["translations"] = translations
        data = rec.audio.read_bytes()
        source = sha256_bytes(data)
        if rec.id in self.have:
            if self.have[rec.id] == source:
                return None
            raise ValueError("already imported with different content; give the new version a new name")
        if source in self.by_hash:
            raise ValueError(f"same audio as {self.by_hash[source]!r} (identical content); remove the copy")
        try:
            info = probe(data, accept_truncated=self.accept_truncated)
        except BadAudio as exc:
            raise ValueError(str(exc)) from None
        media_type, rate = AUDIO_SUFFIXES[rec.audio.suffix.lower()], info.sample_rate
        if lay.sample_rates and rate not in lay.sample_rates:
            if lay.other_rates == "reject":
                raise ValueError(f"sample rate {rate} Hz is not accepted (layout.sample_rates: "
                                 f"{', '.join(map(str, lay.sample_rates))}); convert it, or set "
                                 "layout.other_rates: resample")
            meta["resampled_from"] = {"sha256": source, "sample_rate": rate, "media_type": media_type}
            data, media_type, rate = _resample_flac(data, lay.resample_to), "audio/flac", lay.resample_to
        digest = self.store.put(data, self.seal_for)
        self.by_hash[source] = rec.id
        return _Pending(rec.id, digest, len(data), media_type, info.duration_s, rate, text, meta, labels, consent)

    def prepare_collection(self, sheet: Sheet) -> None:
        """Load what the catalog holds already; decide encryption; seal a collection that must now be sealed."""
        c = self.info.collection
        labels, protocols = sheet.labels_and_protocols()
        coll_labels = [lab.key for lab in self.info.labels]
        with self.catalog.session() as s:
            coll = s.scalar(select(Collection).where(Collection.name == c.name))
            sealed = must_seal(c.restricted, [*labels, *self.layout.labels, *coll_labels], protocols)
            if coll is not None:
                if coll.community != c.community:
                    raise HearthError(f"archive.yaml: collection {c.name!r} belongs to {coll.community}, "
                                      f"not {c.community}")
                # Once encrypted, always encrypted: a collection with a data key never gets clear objects again.
                sealed = sealed or collection_must_seal(s, coll) or self.store.keys.active_record(c.name) is not None
                for ext, digest, meta in s.execute(select(Item.external_id, Item.content_hash, Item.meta)
                                                   .where(Item.collection_id == coll.id)):
                    self.have[ext] = (meta or {}).get("resampled_from", {}).get("sha256", digest)
                    self.by_hash[self.have[ext]] = ext
        if sealed:
            self.seal_for = (c.name, c.community)
            self.report.sealed = True
            if coll is not None:
                seal_collection(self.catalog, self.store, c.name)

    def commit(self, pending: list[_Pending], final: bool = False) -> None:
        """Write collection, consent, items, labels and the batch's import event in one transaction (all or
        nothing), so an import killed later leaves an event for every item it stored."""
        c = self.info.collection
        sheet_consent = [ConsentEntry(subject=p.meta["speaker"], **p.consent)
                         for p in pending if p.consent and p.meta.get("speaker")]
        with self.catalog.session() as s:
            coll = collection_with_consent(s, self.info, labels=[lab.model_dump() for lab in self.info.labels],
                                           individual=sheet_consent)
            for p in pending:
                item = Item(collection_id=coll.id, external_id=p.external_id, kind="audio", content_hash=p.digest,
                            size_bytes=p.size, media_type=p.media_type, duration_s=p.duration_s,
                            sample_rate=p.sample_rate, speaker=p.meta.get("speaker"), dialect=p.meta.get("dialect"),
                            gender=p.meta.get("gender"))
                set_item_words(item, p.text, p.meta, self.store, self.seal_for)  # sealed collections: no clear text
                s.add(item)
                s.flush()
                for key in p.labels:
                    s.add(Label(item_id=item.id, key=key, community=c.community))
            if pending or final:
                self.batches += 1
                r = self.report
                extra = {"unchanged": r.unchanged, "skipped": len(r.problems), "done": True} if final else {}
                audit.append(s, "import", collection=c.name, folder=str(self.folder), batch=self.batches,
                             imported=len(pending), items=[p.external_id for p in pending], **extra)
        for p in pending:
            self.have[p.external_id] = p.meta.get("resampled_from", {}).get("sha256", p.digest)
        self.report.imported += len(pending)


def import_speech_folder(
    catalog: Catalog, store: Store | ContentStore, folder: Path, accept_truncated: bool = False,
    progress: Callable[[int, int], None] | None = None, info_path: Path | None = None,
    batch_size: int | None = None, on_batch: Callable[[int, int], None] | None = None, collection: str | None = None,
) -> ImportReport:
    """Import FOLDER; bad files are reported and skipped; each batch of items is one transaction."""
    folder = Path(folder)
    if not folder.is_dir():
        raise HearthError(f"{folder}: not a folder")
    store = as_store(store)  # callers may pass a plain ContentStore; encrypted collections need the key folder
    info = read_archive_info(folder, info_path)
    if collection:
        info.collection.name = collection
    imp = _Importer(catalog, store, folder, info, accept_truncated)
    problems = imp.report.problems
    sheet = read_sheet(folder, info.layout.sheet, problems)
    imp.report.notes += sheet.notes
    recordings = scan_folder(folder, info.layout, problems)
    all_ids = {rec.id for rec in recordings}
    imp.report.notes += [(r.where, f"names {r.match!r}, which is no recording in the folder")
                         for r in sheet.exact.values() if r.match not in all_ids]
    sweep_partial(store.root)  # temp files of an import that was killed
    imp.prepare_collection(sheet)
    size = batch_size or info.layout.batch_size
    pending: list[_Pending] = []
    for n, rec in enumerate(recordings):
        if progress:
            progress(n, len(recordings))
        held = sheet.held_back(rec.id, all_ids)
        if held is not None:
            # Its own row (or a glob naming it) could not be read exactly: never import it under fewer restrictions.
            problems.append((rec.audio.name, f"not imported: {held[0]} could not be read exactly ({held[1]}); "
                                             "fix that row and import again"))
            continue
        rows = sheet.rows_for(rec.id)
        if rec.id in sheet.conflicts:
            problems.append((rec.audio.name, "the metadata sheet has several rows for it; merge them"))
            continue
        if sheet.present and not rows:
            problems.append((rec.audio.name, "no row in the metadata sheet; add its speaker, dialect and gender"))
            continue
        try:
            p = imp.read_one(rec, rows)
        except ValueError as exc:
            problems.append((rec.audio.name, str(exc)))
            continue
        if p is None:
            imp.report.unchanged += 1
            continue
        pending.append(p)
        if len(pending) >= size:
            imp.commit(pending)
            pending = []
            if on_batch:
                on_batch(imp.report.imported, len(recordings))
    imp.commit(pending, final=True)  # also records the collection and consent when nothing new came
    if on_batch and pending:
        on_batch(imp.report.imported, len(recordings))
    return imp.report
