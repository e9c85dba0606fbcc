"""Metadata sheets (CSV or YAML): speakers, dialects, consent, labels, protocols and licence in bulk.

A row that cannot be read exactly never loses its restrictions (issue 19): keys are normalised only where the
mapping is unambiguous (case, surrounding spaces, `-` for `_`), and each normalisation is reported; any other
unreadable row makes every item it names not importable; a bad row that names no file refuses the import.
"""

from __future__ import annotations

import csv
import difflib
import fnmatch
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from hearthkit.errors import HearthError
from hearthkit.governance.vocabulary import LABELS, Purpose
from hearthkit.ingest.audio import AUDIO_SUFFIXES

SHEET_NAMES = ("metadata.csv", "metadata.yaml", "metadata.yml")
LIST_COLUMNS = ("labels", "protocols", "consent_purposes")
CONSENT_COLUMNS = ("consent_purposes", "consent_given_by", "consent_given_at", "consent_expires_at",
                   "consent_evidence")
ITEM_FIELDS = ("speaker", "dialect", "gender")
KNOWN_COLUMNS = ("file", "labels", "protocols", *CONSENT_COLUMNS, *ITEM_FIELDS)
# A free column (stored in item meta) whose name speaks of a restriction is most likely a misspelt restricting
# column: its rows are unreadable rather than their restriction silently becoming a note in the meta.
RESTRICTING_WORDS = ("label", "protocol", "consent", "purpose", "embargo", "season", "restrict", "sharing",
                     "access", "secret")
_SHORT = "\0short"  # the value of a cell a CSV row lacks (no real cell may hold a NUL byte)
CSV_FIELD_LIMIT = 64 * 1024 * 1024  # the csv module's default (128 KiB) is below a long transcript-like note


@dataclass
class SheetRow:
    """One row: which files it covers (an id, a file name or a glob) and what it assigns to them."""

    where: str  # e.g. "metadata.csv:4", for messages
    match: str
    values: dict = field(default_factory=dict)  # speaker, dialect, licence, … (free columns go to meta)
    labels: list[str] = field(default_factory=list)
    protocols: list[str] = field(default_factory=list)
    consent: dict | None = None  # individual consent of the row's speaker

    @property
    def is_glob(self) -> bool:
        return any(c in self.match for c in "*?[")

    def covers(self, item_id: str) -> bool:
        """Whether this row names ITEM_ID (its own row, or a glob matching it)."""
        return fnmatch.fnmatchcase(item_id, self.match) if self.is_glob else item_id == self.match


@dataclass
class BadRow:
    """A row that could not be read exactly: every item it names is held back, with this reason."""

    where: str
    match: str
    reason: str

    def covers(self, item_id: str) -> bool:
        """Whether the bad row names ITEM_ID; a row whose id differs from it only in case names it too."""
        if any(c in self.match for c in "*?["):
            return fnmatch.fnmatchcase(item_id, self.match) or fnmatch.fnmatch(item_id.lower(), self.match.lower())
        return item_id.lower() == self.match.lower()


@dataclass
class Sheet:
    """Rows by exact id, plus glob rows applied in sheet order before them, plus rows that were unreadable."""

    exact: dict[str, SheetRow] = field(default_factory=dict)
    globs: list[SheetRow] = field(default_factory=list)
    conflicts: set[str] = field(default_factory=set)  # ids with two rows: which one is right is not ours to guess
    bad: list[BadRow] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # normalisations made, reported but not refused
    present: bool = False
    _index: tuple | None = field(default=None, repr=False)

    def rows_for(self, item_id: str) -> list[SheetRow]:
        """Rows that apply to ITEM_ID: matching globs in order, then its own row (which wins)."""
        rows = [r for r in self.globs if r.covers(item_id)]
        if item_id in self.exact:
            rows.append(self.exact[item_id])
        return rows

    def held_back(self, item_id: str, all_ids: set[str]) -> tuple[str, str] | None:
        """(row, reason) when ITEM_ID must not be imported because a row naming it could not be read exactly."""
        if self._index is None:  # built once: an archive may have as many rows as recordings
            globbed = [b for b in self.bad if any(c in b.match for c in "*?[")]
            bad_exact: dict[str, BadRow] = {}
            for b in self.bad:
                if b not in globbed:
                    bad_exact.setdefault(b.match.lower(), b)
            # Rows that name no recording exactly, by lower-cased id: they may mean one that differs in case.
            # Rows that name no recording exactly, by lower-cased id and by that id up to its first dot (a row for
            # `utt001.txt` or `UTT001.WAV.bak`): they may mean a recording whose name differs.
            stray: dict[str, SheetRow] = {}
            for r in self.exact.values():
                if r.match not in all_ids:
                    stray.setdefault(r.match.lower(), r)
                    stray.setdefault(r.match.lower().split(".", 1)[0], r)
            self._index = (bad_exact, globbed, stray)
        bad_exact, bad_globs, stray = self._index
        low = item_id.lower()
        b = bad_exact.get(low) or next((g for g in bad_globs if g.covers(item_id)), None)
        if b is not None:
            return b.where, b.reason
        # A row that names this recording only when case is ignored names no recording exactly: which one it
        # meant is a guess, so the recording it most likely meant waits for the row to be corrected.
        row = stray.get(low)
        if row is None or row.match == item_id:
            row = next((g for g in self.globs if not g.covers(item_id) and BadRow("", g.match, "").covers(item_id)),
                       None)
        if row is not None:
            return row.where, (f"the row names {row.match!r}, which is not this recording's name but may mean it "
                               "(case or suffix differs); correct the row's file")
        return None

    def labels_and_protocols(self) -> tuple[set[str], set[str]]:
        """Every label and protocol any row assigns (to decide whether a collection must be encrypted)."""
        rows = [*self.exact.values(), *self.globs]
        return {k for r in rows for k in r.labels}, {p for r in rows for p in r.protocols}


def _norm_key(key: str) -> str:
    """The unambiguous normal form of a key: no surrounding spaces, lower case, `_` for `-`."""
    return key.strip().lower().replace("-", "_")


_LABEL_BY_NORM = {_norm_key(k): k for k in LABELS}
_PURPOSE_BY_NORM = {_norm_key(p): p for p in Purpose.__members__}


def _scalar(v, what: str) -> str:
    """V as text, or ValueError when it is a mapping, a list or holds a NUL byte (a value no row may have)."""
    if isinstance(v, bool) or not isinstance(v, str | int | float | date):
        raise ValueError(f"{what} is {type(v).__name__}, not text")
    s = v.isoformat() if isinstance(v, date) else str(v)
    if "\0" in s:
        raise ValueError(f"{what} holds a NUL byte")
    return s


def _split(v, what: str) -> list[str]:
    """The `;`-separated entries of V (or of a YAML list); ValueError on anything that is not text."""
    if v is None:
        return []
    parts = [_scalar(x, what) for x in v] if isinstance(v, list) else _scalar(v, what).split(";")
    return [x.strip() for x in parts if x.strip()]


def _known(values: list[str], by_norm: dict[str, str], what: str, where: str, notes: list[tuple[str, str]],
           hint: str) -> list[str]:
    """Each value exactly, or by its unambiguous normal form (noted); ValueError naming the first unknown one."""
    out = []
    for x in values:
        exact = by_norm.get(_norm_key(x))
        if exact is None:
            raise ValueError(f"unknown {what} {x!r}; {hint}")
        if exact != x:
            notes.append((where, f"{what} {x!r} read as {exact!r}"))
        out.append(exact)
    return out


def _id_of(name: str) -> str:
    """A sheet's `file` may name the recording (x.wav) or its id (x)."""
    for suffix in AUDIO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _columns(where: str, raw: dict, notes: list[tuple[str, str]]) -> dict:
    """RAW with known column names in their exact form (noted when normalised); ValueError on a clash."""
    out: dict = {}
    for k, val in raw.items():
        if k is None:  # csv: more fields than the header has names
            raise ValueError(f"{len(val)} more field(s) than the header has columns")
        if val is _SHORT:  # a cut-off row may have lost exactly the cell that restricted it
            raise ValueError("fewer fields than the header has columns; write empty cells as ,,")
        if not isinstance(k, str):
            raise ValueError(f"column name {k!r} is not text")
        name = k
        norm = _norm_key(k)
        if norm in KNOWN_COLUMNS and norm != k:
            notes.append((where, f"column {k!r} read as {norm!r}"))
            name = norm
        if name in out:
            raise ValueError(f"column {name!r} is given twice")
        out[name] = val
    return out


def _free_column_check(name: str, value) -> None:
    """ValueError when free column NAME, holding VALUE, looks like a misspelt restricting column."""
    if value in (None, "", []):
        return
    if name == "" or name.strip() == "":
        raise ValueError("a value stands in a column with no name")
    norm = _norm_key(name)
    close = difflib.get_close_matches(norm, KNOWN_COLUMNS, n=1, cutoff=0.75)
    if close or any(w in norm for w in RESTRICTING_WORDS):
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"column {name!r} is not one hearthkit reads{hint}, and its name speaks of a "
                         "restriction; rename it to a known column or remove it")


def _file_of(raw: dict) -> str:
    """The row's `file`, or HearthError when it cannot be read at all (the row cannot be tied to any item)."""
    keys = [k for k in raw if isinstance(k, str) and _norm_key(k) == "file"]
    if len(keys) > 1:
        raise HearthError(f"columns {', '.join(map(repr, keys))} both name the file")
    v = raw[keys[0]] if keys else None
    if v is None or v is _SHORT or (isinstance(v, str) and not v.strip()):
        raise HearthError("column 'file' is empty or missing")
    if not isinstance(v, str):
        raise HearthError(f"file {v!r} is {type(v).__name__}, not a file name; quote it")
    if "\0" in v:
        raise HearthError("file holds a NUL byte")
    return v.strip()


def _row(where: str, raw: dict, notes: list[tuple[str, str]]) -> SheetRow:
    """Validate one raw row (whose file was read); raise ValueError with the reason."""
    name = raw["file"].strip()
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"file {name!r} is a path, not a file name in the archive")
    labels = _known(_split(raw.get("labels"), "labels"), _LABEL_BY_NORM, "label", where, notes,
                    "use a Local Contexts key such as tk:non_commercial")
    row = SheetRow(where, _id_of(name), labels=labels, protocols=_split(raw.get("protocols"), "protocols"))
    consent_cols = [c for c in CONSENT_COLUMNS if raw.get(c) not in (None, "", [])]
    if consent_cols:
        if "consent_purposes" not in consent_cols:
            raise ValueError(f"{consent_cols[0]} is given but consent_purposes is empty; which purposes the "
                             "consent covers cannot be guessed")
        purposes = _known(_split(raw["consent_purposes"], "consent_purposes"), _PURPOSE_BY_NORM,
                          "consent purpose", where, notes, f"use one of {', '.join(Purpose.__members__)}")
        if not raw.get("consent_given_by") or not raw.get("consent_given_at"):
            raise ValueError("consent_purposes needs consent_given_by and consent_given_at (YYYY-MM-DD)")
        try:
            given = date.fromisoformat(_scalar(raw["consent_given_at"], "consent_given_at"))
            expires = (date.fromisoformat(_scalar(raw["consent_expires_at"], "consent_expires_at"))
                       if raw.get("consent_expires_at") not in (None, "") else None)
        except ValueError as exc:
            if "not text" in str(exc) or "NUL" in str(exc):
                raise
            raise ValueError("consent dates must be YYYY-MM-DD") from None
        row.consent = {"purposes": purposes, "given_by": _scalar(raw["consent_given_by"], "consent_given_by"),
                       "given_at": given, "expires_at": expires,
                       "evidence": _scalar(raw["consent_evidence"], "consent_evidence")
                       if raw.get("consent_evidence") not in (None, "") else None}
    skip = {"file", "labels", "protocols", *CONSENT_COLUMNS}
    for k, v in raw.items():
        if k in skip or v in (None, "", []):
            continue
        if k not in ITEM_FIELDS:
            _free_column_check(k, v)
        row.values[k] = _scalar(v, k) if k in ITEM_FIELDS or not isinstance(v, list) else _split(v, k)
    return row


def _csv_rows(path: Path, text: str) -> list[tuple[int, dict]]:
    """(line, row) of a CSV text; HearthError naming the file and line for anything the csv module refuses."""
    old = csv.field_size_limit()
    csv.field_size_limit(min(CSV_FIELD_LIMIT, sys.maxsize))
    reader = csv.DictReader(text.splitlines(), restval=_SHORT, strict=True)  # a stray quote is an error
    try:
        header = reader.fieldnames or []
        norm = [_norm_key(h) for h in header]
        dup = next((h for h, n in zip(header, norm, strict=True) if norm.count(n) > 1 and n in KNOWN_COLUMNS),
                   None) or next((h for h in header if header.count(h) > 1), None)
        if dup is not None:
            raise HearthError(f"{path}: line 1: column {dup!r} appears twice in the header; keep one")
        return [(reader.line_num, row) for row in reader]
    except csv.Error as exc:
        # line_num counts the lines of the records read whole: the bad record starts on the next one.
        raise HearthError(f"{path}: line {reader.line_num + 1}: not readable CSV ({exc}); fix that line "
                          "(no item was imported)") from None
    finally:
        csv.field_size_limit(old)


def csv_dict_rows(path: Path, lines: list[str]) -> list[dict]:
    """Rows of a CSV file given as LINES (large fields allowed); HearthError naming the file and line if bad."""
    return [row for _, row in _csv_rows(path, "\n".join(lines))]


def _raw_rows(path: Path) -> list[tuple[str, dict]]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise HearthError(f"{path}: not UTF-8 (line {line}, byte {exc.start}); re-save the sheet as UTF-8") from None
    if path.suffix.lower() == ".csv":
        if "\0" in text:
            line = text[: text.index("\0")].count("\n") + 1
            raise HearthError(f"{path}: line {line}: holds a NUL byte (not a text sheet); re-save it as UTF-8 CSV")
        rows = _csv_rows(path, text)
        return [(f"{path.name}:{n}", row) for n, row in rows
                if any(v not in (None, "", _SHORT) for v in row.values())]  # an empty line of commas names nothing
    try:
        data = yaml.safe_load(text) or []
    except (yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        # ValueError: a scalar that looks like a date but is none (2026-02-31) fails in PyYAML's constructor.
        raise HearthError(f"{path}: not valid YAML ({(str(exc).splitlines() or [type(exc).__name__])[0]}); "
                          "no item was imported") from None
    if isinstance(data, dict):
        data = data.get("items", [])
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise HearthError(f"{path}: expected a list of rows (mappings with a `file` key)")
    return [(f"{path.name}:row {n}", row) for n, row in enumerate(data, start=1)]


def read_sheet(folder: Path, name: str | None, problems: list[tuple[str, str]]) -> Sheet:
    """Read the sheet NAME (or the default one) in FOLDER; bad rows go to PROBLEMS and to Sheet.bad."""
    if name is not None:
        path = folder / name
        if folder.resolve() not in path.resolve().parents:
            raise HearthError(f"layout.sheet {name!r} points outside the archive folder {folder}")
        if not path.is_file():
            raise HearthError(f"{path}: metadata sheet named in layout.sheet is missing")
    else:
        path = next((folder / n for n in SHEET_NAMES if (folder / n).is_file()), None)
        if path is None:
            return Sheet()
    sheet = Sheet(present=True)
    for where, raw in _raw_rows(path):
        notes: list[tuple[str, str]] = []
        try:
            file = _file_of(raw)
        except HearthError as exc:
            # Which items this row meant cannot be known: the most restricted reading holds every item back.
            raise HearthError(f"{path}: {where}: {exc}; no item was imported, since the row's restrictions "
                              "cannot be tied to its items — fix the row and import again") from None
        try:
            row = _row(where, _columns(where, raw, notes), notes)
        except ValueError as exc:
            base = file.replace("\\", "/").rsplit("/", 1)[-1]  # a path row still names its file's recording
            sheet.bad.append(BadRow(where, _id_of(base), str(exc)))
            problems.append((where, str(exc)))
            continue
        sheet.notes += notes
        if row.is_glob:
            sheet.globs.append(row)
        elif row.match in sheet.exact or row.match in sheet.conflicts:
            first = sheet.exact.pop(row.match, None)
            sheet.conflicts.add(row.match)
            problems.append((where, f"duplicate row for {row.match!r}" + (f" (also at {first.where})" if first else "")
                             + "; merge the rows into one"))
        else:
            sheet.exact[row.match] = row
    return sheet
