"""Issue 19: random corruptions of metadata sheets (CSV and YAML) and archive.yaml never lower an item's protection.

Hypothesis draws the restrictions a steward meant (labels, protocols, individual consent on exact and glob rows),
writes them as a real sheet, corrupts the text the way people and tools do (mis-cased or misspelt keys, garbage
dates, huge fields, wrong types, NUL bytes, wrong encodings, duplicate rows, ragged rows, dropped columns), and
imports a small real archive (soundfile WAVs) into a real SQLite catalog and store. Invariants:

- the import never crashes: it returns a report, or refuses with one HearthError line;
- an item whose own row (or a glob row naming it) was made unreadable is not in the catalog;
- every item that is imported carries every label, protocol and consent its rows assigned;
- the manifest for a requester outside every protocol includes no item whose rows named a protocol or a
  steward-only label.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import compute_manifest
from hearthkit.ingest.sealing import item_words
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.vault import Store
from tests.ingest.archive_maker import write_audio, write_info

IDS = [f"rec{i:03d}" for i in range(5)]
LABEL_POOL = ["tk:secret_sacred", "tk:women_general", "tk:non_commercial", "bc:research", "tk:verified",
              "tk:culturally_sensitive"]
PROTOCOL_POOL = ["whanau", "clan-a"]
GLOBS = ["*", "rec00[0-2]", "rec*", "rec0?1"]
COLUMNS = ["file", "speaker", "labels", "protocols", "consent_purposes", "consent_given_by", "consent_given_at",
           "consent_expires_at", "note"]
# Corruptions of one row. Readable ones keep the row's meaning; unreadable ones must hold its items back.
READABLE = ("none", "case", "huge")
UNREADABLE = ("misspell", "bad_date", "wrong_type", "nul", "dup", "short", "extra", "bad_purpose")


@dataclass
class Row:
    """What a steward meant one row to say."""

    file: str
    speaker: str
    labels: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    consent: tuple[list[str], str, str | None] | None = None  # purposes, given_at, expires_at
    corruption: str = "none"

    @property
    def is_glob(self) -> bool:
        return any(c in self.file for c in "*?[")

    def covers(self, item_id: str) -> bool:
        import fnmatch

        return fnmatch.fnmatchcase(item_id, self.file) if self.is_glob else _id(self.file) == item_id


def _id(name: str) -> str:
    return name[:-4] if name.endswith(".wav") else name


@st.composite
def sheets(draw):
    """(rows as meant, format, sheet-level corruption)."""
    rows: list[Row] = []
    for g in draw(st.lists(st.sampled_from(GLOBS), max_size=2, unique=True)):
        rows.append(Row(g, "kui", draw(st.lists(st.sampled_from(LABEL_POOL), max_size=2, unique=True)),
                        draw(st.lists(st.sampled_from(PROTOCOL_POOL), max_size=1)),
                        corruption=draw(st.sampled_from(READABLE + UNREADABLE))))
    for i in draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=5, unique=True)):
        consent = None
        if draw(st.booleans()):
            consent = (draw(st.lists(st.sampled_from(["research", "language_revitalization", "commercial"]),
                                     min_size=1, max_size=2, unique=True)),
                       draw(st.sampled_from(["2026-01-02", "2025-06-30"])),
                       draw(st.sampled_from([None, "2030-01-01", "2026-02-01"])))
        rows.append(Row(draw(st.sampled_from([i, f"{i}.wav"])), f"spk_{i}",
                        draw(st.lists(st.sampled_from(LABEL_POOL), max_size=3, unique=True)),
                        draw(st.lists(st.sampled_from(PROTOCOL_POOL), max_size=2, unique=True)), consent,
                        draw(st.sampled_from(READABLE + UNREADABLE))))
    fmt = draw(st.sampled_from(["csv", "yaml"]))
    sheet_level = draw(st.sampled_from(["none", "none", "header_case", "drop_labels", "drop_protocols",
                                        "drop_expiry", "drop_file", "latin1", "nul_csv"]))
    return draw(st.permutations(rows)), fmt, sheet_level


def _mangle(key: str) -> str:
    """An unambiguous variant of KEY: other case, `-` for `_`, surrounding spaces."""
    return f" {key.upper().replace('_', '-')} "


def _cells(row: Row, fmt: str) -> dict:
    """The row as written, before the row-level corruptions that need the format."""
    c = row.corruption
    labels = [_mangle(k) if c == "case" else k for k in row.labels] + (["tk:seasnal"] if c == "misspell" else [])
    out: dict = {"file": row.file, "speaker": row.speaker, "labels": ";".join(labels),
                 "protocols": ";".join(row.protocols)}
    if row.consent:
        purposes, given, expires = row.consent
        out.update(consent_purposes=";".join(purposes), consent_given_by=row.speaker, consent_given_at=given,
                   consent_expires_at=expires or "")
    if c == "bad_date":
        out.update(consent_purposes=out.get("consent_purposes") or "research", consent_given_by=row.speaker,
                   consent_given_at="31/02/2026")
    if c == "bad_purpose":
        out.update(consent_purposes="reserch", consent_given_by=row.speaker, consent_given_at="2026-01-02")
    if c == "huge":
        out["note"] = "kōrero " * 25_000  # beyond the csv module's default field limit
    if c == "nul":
        out["speaker"] = row.speaker + "\0"
    if c == "wrong_type" and fmt == "yaml":
        out["labels"] = {"key": labels[0] if labels else "tk:verified"}
    elif c == "wrong_type":
        out["labels"] = ";".join([*labels, "{'key': 1}"])
    return out


def write_sheet(folder: Path, rows: list[Row], fmt: str, sheet_level: str) -> None:
    columns = list(COLUMNS)
    drop = {"drop_labels": "labels", "drop_protocols": "protocols", "drop_expiry": "consent_expires_at",
            "drop_file": "file"}.get(sheet_level)
    if drop:
        columns.remove(drop)
    written = []
    for r in rows:
        cells = {k: val for k, val in _cells(r, fmt).items() if k in columns}
        written.append((r, cells))
        if r.corruption == "dup":
            written.append((r, {**cells, "labels": ""}))  # a second row for the same file, fewer restrictions
    if fmt == "yaml":
        docs = [{(k.title() if sheet_level == "header_case" else k): val for k, val in cells.items()
                 if val not in ("", None)} for _, cells in written]
        (folder / "metadata.yaml").write_text(yaml.safe_dump(docs, allow_unicode=True), encoding="utf-8")
        return
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c.title() if sheet_level == "header_case" else c for c in columns])
    for r, cells in written:
        line = [cells.get(c, "") for c in columns]
        if r.corruption == "short":
            line = line[:2]
        elif r.corruption == "extra":
            line = [*line, "stray"]
        w.writerow(line)
    text = buf.getvalue()
    if sheet_level == "latin1":
        text = text.replace("kui", "kuí").replace("spk_", "spé_")
        (folder / "metadata.csv").write_bytes(text.encode("latin-1", errors="replace"))
    elif sheet_level == "nul_csv":
        (folder / "metadata.csv").write_text(text.replace("kui", "k\0ui").replace("spk_", "spk\0_"), encoding="utf-8")
    else:
        (folder / "metadata.csv").write_text(text, encoding="utf-8")


def meant(rows: list[Row], sheet_level: str) -> list[Row]:
    """The rows as the file really says them: a dropped column takes its values out of what the sheet assigns."""
    out = []
    for r in rows:
        r = Row(**{**r.__dict__})
        if sheet_level == "drop_labels":
            r.labels = []
            if r.corruption in ("misspell", "wrong_type", "case"):
                r.corruption = "none"  # the corrupted cell went with its column
        if sheet_level == "drop_protocols":
            r.protocols = []
        if sheet_level == "drop_expiry" and r.consent:
            r.consent = (r.consent[0], r.consent[1], None)
        out.append(r)
    return out


def unreadable(r: Row, fmt: str) -> bool:
    """Whether the row, as written, cannot be read exactly (so every item it names must be held back)."""
    if r.corruption in ("short", "extra") and fmt == "yaml":
        return False  # a YAML row has no cell count
    if r.corruption == "dup" and r.is_glob:
        return False  # two glob rows both apply: nothing is lost
    return r.corruption in UNREADABLE


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """A small archive (five short real recordings) and a migrated empty catalog, both copied per example."""
    root = tmp_path_factory.mktemp("fuzz")
    folder = root / "archive"
    folder.mkdir()
    for n, rid in enumerate(IDS):  # short recordings: a fuzz example should take milliseconds
        write_audio(folder / f"{rid}.wav", seconds=0.05, seed=n)
        (folder / f"{rid}.txt").write_text(f"kupu {n}\n", encoding="utf-8")
    write_info(folder)
    Catalog.open(f"sqlite:///{root / 'catalog.sqlite'}", create=True).close()
    return root / "archive", root / "catalog.sqlite"


def fresh(base: tuple[Path, Path]) -> tuple[Path, Catalog, Store]:
    tmp = Path(tempfile.mkdtemp(prefix="hk-fuzz-", dir=base[1].parent))  # under pytest's tmp: cleaned with it
    folder = tmp / "archive"
    shutil.copytree(base[0], folder, copy_function=os.link)
    (folder / "archive.yaml").unlink()
    shutil.copy(base[0] / "archive.yaml", folder / "archive.yaml")  # its own copy: examples may corrupt it
    shutil.copy(base[1], tmp / "catalog.sqlite")
    return folder, Catalog.open(f"sqlite:///{tmp / 'catalog.sqlite'}"), Store(tmp / "store", tmp / "keys")


def imported(catalog: Catalog, store: Store) -> dict[str, dict]:
    """Each stored item's labels (own and collection), protocols and individual consent of its speaker."""
    out = {}
    with catalog.session() as s:
        coll_labels = set(s.scalars(select(Label.key).where(Label.collection_id.is_not(None))))
        consents = {(c.subject, tuple(sorted(c.purposes)), c.given_at.date().isoformat(),
                     c.expires_at.date().isoformat() if c.expires_at else None)
                    for c in s.scalars(select(Consent).where(Consent.scope == "individual"))}
        for it in s.scalars(select(Item)):
            _, meta = item_words(store, it)
            labels = set(s.scalars(select(Label.key).where(Label.item_id == it.id))) | coll_labels
            out[it.external_id] = {"labels": labels, "protocols": set(meta.get("protocols", [])),
                                   "speaker": it.speaker, "consents": consents}
    return out


def outsider_manifest(catalog: Catalog) -> set[str]:
    with catalog.session() as s:
        names = tuple(s.scalars(select(Collection.name)))
    man = compute_manifest(catalog, Request("research", "outsider", names, "2026-03-01"))
    return {i["external_id"] for i in man.included}


def check(folder: Path, catalog: Catalog, store: Store, rows: list[Row] | None, fmt: str) -> dict[str, dict]:
    try:
        import_speech_folder(catalog, store, folder)
    except HearthError as exc:
        assert len(str(exc).splitlines()) == 1 and "object at 0x" not in str(exc)
        assert imported(catalog, store) == {}  # a refused import stores nothing
        return {}
    items = imported(catalog, store)
    assert set(items) <= set(IDS)
    for rid, got in items.items():
        mine = [r for r in rows or [] if r.covers(rid)]
        assert not any(unreadable(r, fmt) for r in mine), (rid, mine)
        for r in mine:
            assert set(r.labels) <= got["labels"], (rid, r, got)
            assert set(r.protocols) <= got["protocols"], (rid, r, got)
        own = [r for r in mine if not r.is_glob]
        if own and own[-1].consent:
            purposes, given, expires = own[-1].consent
            assert (own[-1].speaker, tuple(sorted(purposes)), given, expires) in got["consents"], (rid, got)
    sealed = {k for k, cat in v.LABELS.items() if cat in (v.STEWARD_ONLY, v.PROTOCOL)}
    for rid in outsider_manifest(catalog):
        assert not items[rid]["protocols"], (rid, items[rid])
        assert not items[rid]["labels"] & sealed, (rid, items[rid])
        assert not any(r.protocols or set(r.labels) & sealed for r in rows or [] if r.covers(rid))
    return items


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(sheets())
def test_corrupted_sheets_never_lower_protection(base, drawn):
    rows, fmt, sheet_level = drawn
    folder, catalog, store = fresh(base)
    write_sheet(folder, rows, fmt, sheet_level)
    items = check(folder, catalog, store, meant(rows, sheet_level), fmt)
    if fmt == "csv" and any(r.corruption == "nul" for r in rows):
        assert items == {}  # a NUL byte in a CSV refuses the whole sheet (its cells cannot be trusted)
    elif sheet_level in ("none", "header_case", "drop_labels", "drop_protocols", "drop_expiry"):
        # Not stricter than needed either: an item whose rows all read exactly is imported.
        named = {rid for rid in IDS if any(r.covers(rid) for r in rows)}
        clean = {rid for rid in named if not any(r.covers(rid) and (unreadable(r, fmt) or r.corruption == "dup")
                                                 for r in meant(rows, sheet_level))}
        assert clean <= set(items), (clean, set(items), rows)
    if sheet_level == "drop_file" or (sheet_level in ("latin1", "nul_csv") and fmt == "csv"):
        assert items == {}  # the sheet cannot be read, or its rows cannot be tied to items: nothing imported
    shutil.rmtree(folder.parent)


ARCHIVE_EDITS = {
    "none": lambda i: None,
    "layout_label_case": lambda i: i.setdefault("layout", {}).update(labels=["TK:Secret_Sacred"]),
    "layout_label_ok": lambda i: i.setdefault("layout", {}).update(labels=["tk:secret_sacred"]),
    "collection_label": lambda i: i.update(labels=[{"key": "tk:women_general"}]),
    "collection_label_typo": lambda i: i.update(labels=[{"key": "tk:women-generl"}]),
    "misspelt_field": lambda i: i["collection"].update(restriced=True),
    "restricted": lambda i: i["collection"].update(restricted=True),
    "bad_purpose": lambda i: i["collective_consent"][0].update(purposes=["Reserch"]),
    "bad_date": lambda i: i["collective_consent"][0].update(given_at="2026-13-01"),
    "wrong_type": lambda i: i["collection"].update(restricted="maybe"),
    "consent_not_list": lambda i: i.update(individual_consent={"subject": "x"}),
    "nul": lambda i: i["collection"].update(citation="Test\0archive"),
    "top_not_mapping": lambda i: None,
}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(ARCHIVE_EDITS)), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_corrupted_archive_yaml_refuses_or_keeps_every_restriction(base, edit, encoding):
    folder, catalog, store = fresh(base)
    info = yaml.safe_load((folder / "archive.yaml").read_text(encoding="utf-8"))
    ARCHIVE_EDITS[edit](info)
    text = yaml.safe_dump(info, allow_unicode=True).replace("Test Community", "Te Hapöri")
    if edit == "top_not_mapping":
        text = "- " + text.replace("\n", "\n  ")
    (folder / "archive.yaml").write_bytes(text.encode(encoding, errors="replace"))
    (folder / "metadata.csv").write_text("file,speaker\n*,kui\n", encoding="utf-8")
    items = check(folder, catalog, store, [Row("*", "kui")], "csv")
    good = edit in ("none", "layout_label_ok", "collection_label", "restricted") and encoding == "utf-8"
    assert bool(items) == good, (edit, encoding, items)
    if edit in ("layout_label_ok", "collection_label") and good:
        assert all({"tk:secret_sacred", "tk:women_general"} & it["labels"] for it in items.values())
        assert outsider_manifest(catalog) == set()
    shutil.rmtree(folder.parent)
