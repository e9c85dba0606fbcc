"""Import time-aligned annotations (ELAN, Praat) as training items: one item per annotated segment.

Decision: each segment becomes its own item whose content is the cut audio of the segment (16-bit WAV at the
recording's rate), not the whole recording with offsets. Items stay what the governed loader, the policy engine
and the recipes already handle (one hash, one transcript, one speaker, one consent subject); the recording they
came from is kept in `Item.meta` (`source_recording`, `source_sha256`, `start_s`, `end_s`, `tier`, `annotation`)
for lineage. The external id is `<recording stem>@<start ms>-<end ms>`, so a corrected file imported again
updates the transcript of the same segment (counted as corrected) instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item
from hearthkit.errors import HearthError
from hearthkit.ingest.archive import ArchiveInfo
from hearthkit.ingest.audio import AUDIO_SUFFIXES, BadAudio, probe, reason
from hearthkit.ingest.sealing import item_words, set_item_words
from hearthkit.ingest.sheet import Sheet
from hearthkit.ingest.speech_folder import ImportReport, _Importer, _Pending, normalise_transcript
from hearthkit.store.text import SEALED_TEXT
from hearthkit.store.vault import Store, as_store


@dataclass(frozen=True)
class Annotation:
    """One time-aligned annotation read from an ELAN tier or a Praat interval tier."""

    start: float
    end: float
    text: str
    tier: str
    speaker: str | None = None
    extra: dict = field(default_factory=dict)  # e.g. a translation on a dependent tier


@dataclass
class SegmentReport(ImportReport):
    """An import report that also counts transcripts corrected in place."""

    corrected: int = 0


def find_audio(annotation_file: Path, hinted: list[str], audio: Path | None) -> Path:
    """The recording an annotation file describes: --audio, else a hinted name or the same stem beside it.

    Media URLs inside the file are only trusted as file names in the annotation's own folder, so a file from
    elsewhere cannot make the importer read arbitrary paths.
    """
    if audio is not None:
        if not audio.is_file():
            raise HearthError(f"{audio}: no such recording")
        return audio
    folder = annotation_file.parent
    names = [Path(h.replace("\\", "/")).name for h in hinted if h]
    names += [annotation_file.stem + s for s in AUDIO_SUFFIXES]
    for n in names:
        if n and (folder / n).is_file() and Path(n).suffix.lower() in AUDIO_SUFFIXES:
            return folder / n
    raise HearthError(f"{annotation_file}: its recording was not found beside it (looked for "
                      f"{', '.join(dict.fromkeys(names))}); pass --audio")


def cut(recording: bytes, start: float, end: float) -> tuple[bytes, int, float]:
    """16-bit mono WAV bytes of RECORDING between START and END seconds, its sample rate and duration."""
    try:
        with sf.SoundFile(io.BytesIO(recording)) as f:
            sr = f.samplerate
            if start >= end or end > f.frames / sr + 0.05:
                raise ValueError(f"{start:.3f}-{end:.3f} s lies outside the recording (0-{f.frames / sr:.3f} s)")
            f.seek(int(start * sr))
            wav = f.read(int(end * sr) - int(start * sr), dtype="float32", always_2d=True).mean(axis=1)
    except ValueError:
        raise
    except Exception as exc:  # soundfile names its buffer object (<_io.BytesIO …>), never the file: say what is wrong
        raise ValueError(f"the recording could not be cut ({reason(exc)})") from None
    buf = io.BytesIO()
    sf.write(buf, wav, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue(), sr, len(wav) / sr


def corrected_words(text: str | None, meta: dict, new_text: str, new_tr: dict | None) -> dict | None:
    """META after a re-import corrects TEXT to NEW_TEXT and the translations NEW_TR names; None when nothing changed.

    Translations merge by language: a file that carries only some languages (an ELAN file with `translation-fr`
    alone) corrects those and leaves the others as they were. What a correction replaces is kept beside it
    (`previous_text`, `previous_translations` by language: the last correction's) and appended to `corrections`
    (every correction's, oldest first), so no stored word is lost however often an item is corrected.
    """
    old_tr = meta.get("translations") if isinstance(meta.get("translations"), dict) else {}
    merged = {**old_tr, **(new_tr or {})}
    if text == new_text and merged == old_tr:
        return None
    words = dict(meta)
    replaced: dict = {}
    if text != new_text:
        words["previous_text"] = replaced["text"] = text
    changed = {lang: old_tr[lang] for lang in old_tr if merged[lang] != old_tr[lang]}
    if changed:
        words["previous_translations"] = {**(meta.get("previous_translations") or {}), **changed}
        replaced["translations"] = changed
    if replaced:
        words["corrections"] = [*(meta.get("corrections") or []), replaced]
    if merged:
        words["translations"] = merged
    return words


def import_annotations(catalog: Catalog, store: Store, info: ArchiveInfo, annotations: list[Annotation],
                       audio: Path, source: Path, default_speaker: str | None = None,
                       meta: dict | None = None) -> SegmentReport:
    """Store each annotated segment of AUDIO as an item of INFO's collection (one transaction)."""
    report = SegmentReport(collection=info.collection.name)
    # The speech-folder importer's collection logic: consent records, and sealing when the collection is restricted.
    imp = _Importer(catalog, as_store(store), audio.parent, info, accept_truncated=False)
    imp.report = report
    imp.prepare_collection(Sheet())
    recording = audio.read_bytes()
    try:
        probe(recording)  # a recording that is not audio is one line naming it, before anything is stored
    except BadAudio as exc:
        raise HearthError(f"{audio}: {exc}; nothing was imported") from None
    src_hash = hashlib.sha256(recording).hexdigest()
    pending: list[_Pending] = []
    seen: set[str] = set()
    for a in annotations:
        where = f"{source.name} [{a.tier} {a.start:.3f}-{a.end:.3f} s]"
        text = normalise_transcript(a.text)
        if not text:
            report.problems.append((where, "empty annotation; nothing to learn from"))
            continue
        ext = f"{audio.stem}@{int(round(a.start * 1000))}-{int(round(a.end * 1000))}"
        if ext in seen:
            report.problems.append((where, f"two annotations of the same span {ext}; keep one"))
            continue
        seen.add(ext)
        try:
            data, sr, dur = cut(recording, a.start, a.end)
        except ValueError as exc:
            report.problems.append((where, str(exc)))
            continue
        speaker = a.speaker or default_speaker
        m = {**(meta or {}), "source_recording": audio.name, "source_sha256": src_hash,
             "start_s": round(a.start, 3), "end_s": round(a.end, 3), "tier": a.tier, "annotation": source.name}
        # A translation tier (ingest/elan.py) is training data for translation models, in the place speech folders
        # keep theirs (`translations`, by language); other dependent tiers are kept as they are.
        translations = {k.split(":", 1)[1]: v for k, v in a.extra.items() if k.startswith("translation:")}
        others = {k: v for k, v in a.extra.items() if not k.startswith("translation:")}
        if translations:
            m["translations"] = translations
        if others:
            m["tiers"] = others  # dependent tiers: the speaker's words, sealed with the text
        if speaker:
            m["speaker"] = speaker
        pending.append(_Pending(ext, imp.store.put(data, imp.seal_for), len(data), "audio/wav", dur, sr, text, m, [],
                                None))
    # Corrections: a segment already in the catalog with the same audio gets its transcript updated.
    replaced: list[str] = []  # sealed text objects of the words before the correction
    with catalog.session() as s:
        ids = [p.external_id for p in pending]
        have = {x.external_id: x for x in s.scalars(select(Item).join(Collection).where(
            Collection.name == info.collection.name, Item.external_id.in_(ids)))} if ids else {}
        fresh = []
        for p in pending:
            old = have.get(p.external_id)
            if old is not None and old.content_hash == p.digest:
                text, old_meta = item_words(imp.store, old)
                words = corrected_words(text, old_meta, p.text, p.meta.get("translations"))
                if words is not None:
                    if SEALED_TEXT in (old.meta or {}):
                        replaced.append(old.meta[SEALED_TEXT])  # its words all live on in WORDS
                    set_item_words(old, p.text, words, imp.store, imp.seal_for)
                    report.corrected += 1
                else:
                    report.unchanged += 1
                continue
            fresh.append(p)
    for digest in replaced:  # after the rows point at the new objects: a crash leaves an orphan, never a hole
        imp.store.delete(digest)
    imp.commit(fresh, final=True)  # with its import event, in the same transaction
    return report
