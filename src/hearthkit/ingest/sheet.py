"""Metadata sheets (CSV or YAML): speakers, dialects, consent, labels, protocols and licence in bulk."""

from __future__ import annotations

import csv
import fnmatch
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


@dataclass
class Sheet:
    """Rows by exact id, plus glob rows applied in sheet order before them."""

    exact: dict[str, SheetRow] = field(default_factory=dict)
    globs: list[SheetRow] = field(default_factory=list)
    conflicts: set[str] = field(default_factory=set)  # ids with two rows: which one is right is not ours to guess
    present: bool = False

    def rows_for(self, item_id: str) -> list[SheetRow]:
        """Rows that apply to ITEM_ID: matching globs in order, then its own row (which wins)."""
        rows = [r for r in self.globs if fnmatch.fnmatchcase(item_id, r.match)]
        if item_id in self.exact:
            rows.append(self.exact[item_id])
        return rows

    def labels_and_protocols(self) -> tuple[set[str], set[str]]:
        """Every label and protocol any row assigns (to decide whether a collection must be encrypted)."""
        rows = [*self.exact.values(), *self.globs]
        return {k for r in rows for k in r.labels}, {p for r in rows for p in r.protocols}


def _split(v) -> list[str]:
    if v is None:
        return []
    if isinstance(v, list):
        return [str(x).strip() for x in v if str(x).strip()]
    return [x.strip() for x in str(v).split(";") if x.strip()]


def _id_of(name: str) -> str:
    """A sheet's `file` may name the recording (x.wav) or its id (x)."""
    for suffix in AUDIO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _row(where: str, raw: dict) -> SheetRow:
    """Validate one raw row; raise ValueError with the reason."""
    name = str(raw.get("file") or "").strip()
    if not name:
        raise ValueError("column 'file' is empty or missing")
    if "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise ValueError(f"file {name!r} is a path, not a file name in the archive")
    row = SheetRow(where, _id_of(name), labels=_split(raw.get("labels")), protocols=_split(raw.get("protocols")))
    for key in row.labels:
        if key not in LABELS:
            raise ValueError(f"unknown label {key!r}; use a Local Contexts key such as tk:non_commercial")
    if raw.get("consent_purposes") not in (None, "", []):
        purposes = _split(raw["consent_purposes"])
        bad = [p for p in purposes if p not in Purpose.__members__]
        if bad:
            raise ValueError(f"unknown consent purpose {bad[0]!r}; use one of {', '.join(Purpose.__members__)}")
        if not raw.get("consent_given_by") or not raw.get("consent_given_at"):
            raise ValueError("consent_purposes needs consent_given_by and consent_given_at (YYYY-MM-DD)")
        try:
            given = date.fromisoformat(str(raw["consent_given_at"]))
            expires = date.fromisoformat(str(raw["consent_expires_at"])) if raw.get("consent_expires_at") else None
        except ValueError:
            raise ValueError("consent dates must be YYYY-MM-DD") from None
        row.consent = {"purposes": purposes, "given_by": str(raw["consent_given_by"]), "given_at": given,
                       "expires_at": expires, "evidence": raw.get("consent_evidence") or None}
    skip = {"file", "labels", "protocols", *CONSENT_COLUMNS}
    row.values = {k: (str(v) if isinstance(v, date) else v) for k, v in raw.items()
                  if k not in skip and k is not None and v not in (None, "")}
    return row


def _raw_rows(path: Path) -> list[tuple[str, dict]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HearthError(f"{path}: not UTF-8 text; re-save the sheet as UTF-8") from None
    if path.suffix.lower() == ".csv":
        return [(f"{path.name}:{n}", row) for n, row in enumerate(csv.DictReader(text.splitlines()), start=2)]
    try:
        data = yaml.safe_load(text) or []
    except yaml.YAMLError as exc:
        raise HearthError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict):
        data = data.get("items", [])
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise HearthError(f"{path}: expected a list of rows (mappings with a `file` key)")
    return [(f"{path.name}:row {n}", row) for n, row in enumerate(data, start=1)]


def read_sheet(folder: Path, name: str | None, problems: list[tuple[str, str]]) -> Sheet:
    """Read the sheet NAME (or the default one) in FOLDER; bad rows go to PROBLEMS, the rest is returned."""
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
        try:
            row = _row(where, raw)
        except ValueError as exc:
            problems.append((where, str(exc)))
            continue
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
