"""The archive description (archive.yaml): collection, licence, citation and consent records."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hearthkit.errors import HearthError
from hearthkit.governance.vocabulary import LABELS, Purpose


def _label_key(v: str) -> str:
    """V when it is a Local Contexts key exactly as the vocabulary spells it; else ValueError saying which it is."""
    if v in LABELS:
        return v
    near = next((k for k in LABELS if k == v.strip().lower().replace("-", "_")), None)
    hint = f"write it as {near!r}" if near else "use a Local Contexts key such as tk:non_commercial"
    raise ValueError(f"label {v!r} is not a known key; {hint}")


class _Strict(BaseModel):
    """A section of archive.yaml: a misspelt field is refused, never ignored (it may have been a restriction)."""

    model_config = ConfigDict(extra="forbid")


class ConsentEntry(_Strict):
    """One consent record as written in archive.yaml."""

    subject: str = Field(description="Community name (collective) or speaker id (individual).")
    given_by: str = Field(description="Who gave consent (a person or a council).")
    given_at: date = Field(description="Date consent was given.")
    purposes: list[Purpose] = Field(description="Purposes consented to; commercial is never implied.")
    expires_at: date | None = Field(None, description="Consent ends on this date.")
    evidence: str | None = Field(None, description="Reference to the signed form or recording of consent.")


class CollectionInfo(_Strict):
    """The collection an archive is imported into."""

    name: str = Field(description="Collection name, unique in the catalog.")
    community: str = Field(description="The community that holds authority over the collection.")
    licence: str | None = Field(None, description="Licence or terms of use.")
    citation: str | None = Field(None, description="How to cite / attribute the collection.")
    restricted: bool = Field(False, description="Steward marked the collection restricted.")


class LayoutConfig(_Strict):
    """How an archive folder is laid out: which files hold what, and what to do with odd recordings."""

    transcript: str | None = Field(".txt", description="Suffix of the transcript file next to each recording "
                                   "(e.g. .mb or .mb.cleaned); null for recordings without transcripts.")
    translations: dict[str, str] = Field(default_factory=dict, description="Language tag -> suffix of same-named "
                                         "translation files (e.g. {fr: .fr.cleaned}); stored in item meta.")
    name_pattern: str | None = Field(None, description="Regex with named groups matched against each file id "
                                     "(name without suffix), e.g. '^(?P<speaker>[a-z]+)_'; groups become metadata.")
    sheet: str | None = Field(None, description="Metadata sheet (CSV or YAML) relative to the archive folder; "
                              "default metadata.csv, metadata.yaml or metadata.yml when present.")
    labels: list[str] = Field(default_factory=list, description="Local Contexts label keys applied to every item.")
    sample_rates: list[int] | None = Field(None, description="Accepted sample rates in Hz; null accepts any.")
    other_rates: Literal["reject", "resample"] = Field("reject", description="Recordings at other rates: reject "
                                                       "them, or resample to `resample_to` and store the result.")
    resample_to: int = Field(16000, description="Target rate (Hz) when other_rates is resample.")
    batch_size: int = Field(200, ge=1, description="Items per catalog transaction; a crash loses at most one batch.")

    @field_validator("labels")
    @classmethod
    def _known_labels(cls, v: list[str]) -> list[str]:
        return [_label_key(k) for k in v]

    @field_validator("name_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return v


class CollectionLabel(_Strict):
    """A label on the whole collection, as written under `labels:` in archive.yaml."""

    key: str = Field(description="Local Contexts key, e.g. bc:non_commercial.")
    text: str | None = Field(None, description="The community's wording of the label.")

    @field_validator("key")
    @classmethod
    def _known(cls, v: str) -> str:
        return _label_key(v)


class ArchiveInfo(_Strict):
    """archive.yaml: the collection and the consent that comes with an archive folder."""

    collection: CollectionInfo
    collective_consent: list[ConsentEntry] = Field(default_factory=list)
    individual_consent: list[ConsentEntry] = Field(default_factory=list)
    layout: LayoutConfig = Field(default_factory=LayoutConfig, description="File layout of the archive folder.")
    labels: list[CollectionLabel] = Field(default_factory=list, description="Labels on the whole collection.")
    classes: list[str | int] = Field(default_factory=list, description="Class names of raster label items.")


def _nul_field(data, path: str = "") -> str | None:
    """The dotted path of the first text in DATA holding a NUL byte (no catalog may store it), or None."""
    if isinstance(data, str):
        return path or "(top)" if "\0" in data else None
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for k, v in items:
        if isinstance(k, str) and "\0" in k:
            return f"{path}.{k}".lstrip(".")
        found = _nul_field(v, f"{path}.{k}".lstrip("."))
        if found:
            return found
    return None


def read_archive_info(folder: Path, path: Path | None = None) -> ArchiveInfo:
    """Read PATH (default FOLDER/archive.yaml) or fail naming the file and field."""
    path = Path(path) if path is not None else folder / "archive.yaml"
    if not path.is_file():
        raise HearthError(f"{path}: missing; an archive needs archive.yaml naming its collection and consent "
                          "(or pass --info FILE for a read-only archive)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError, ValueError, TypeError, RecursionError) as exc:
        # ValueError: a scalar that looks like a date but is none (2026-13-01) fails in PyYAML's constructor.
        raise HearthError(f"{path}: not valid UTF-8 YAML ({(str(exc).splitlines() or [type(exc).__name__])[0]})"
                          "; nothing was imported") from None
    if data is not None and not isinstance(data, dict):
        raise HearthError(f"{path}: expected a mapping with `collection:` and consent, not {type(data).__name__}")
    bad = _nul_field(data or {})
    if bad:
        raise HearthError(f"{path}: field {bad}: holds a NUL byte; nothing was imported")
    try:
        return ArchiveInfo.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "not a field archive.yaml knows; fix its spelling (a misspelt field may be a lost restriction)"
        raise HearthError(f"{path}: field {field}: {msg}; nothing was imported") from None


def _utc(d: date | None):
    """Midnight UTC of D (the catalog stores aware datetimes), or None."""
    from datetime import UTC, datetime

    return datetime(d.year, d.month, d.day, tzinfo=UTC) if d else None


def collection_with_consent(s, info: ArchiveInfo, labels: list[dict] | None = None,
                            individual: list[ConsentEntry] | None = None):
    """Get or create INFO's collection in session S; add its consent records (and INDIVIDUAL ones, e.g. from a
    metadata sheet) and collection labels not yet there."""
    from sqlalchemy import select

    from hearthkit.catalog.models import Collection, Consent, Label

    c = info.collection
    coll = s.scalar(select(Collection).where(Collection.name == c.name))
    if coll is None:
        coll = Collection(name=c.name, community=c.community, licence=c.licence, citation=c.citation,
                          restricted=c.restricted)
        s.add(coll)
        s.flush()
    elif coll.community != c.community:
        raise HearthError(f"collection {c.name!r} belongs to {coll.community}, not {c.community}")
    elif c.restricted and not coll.restricted:
        coll.restricted = True  # a steward's restriction only ever tightens on import; lifting it is a steward act
    existing = {(x.scope, x.subject, x.given_by, x.given_at.date(), tuple(x.purposes))
                for x in s.scalars(select(Consent).where(Consent.collection_id == coll.id))}
    for scope, entries in (("collective", info.collective_consent),
                           ("individual", [*info.individual_consent, *(individual or [])])):
        for e in entries:
            purposes = [p.value for p in e.purposes]
            key = (scope, e.subject, e.given_by, e.given_at, tuple(purposes))
            if key in existing:
                continue
            existing.add(key)  # the same speaker's consent may come on many sheet rows
            s.add(Consent(collection_id=coll.id, scope=scope, subject=e.subject, given_by=e.given_by,
                          given_at=_utc(e.given_at), purposes=purposes, evidence=e.evidence,
                          expires_at=_utc(e.expires_at)))
    have_labels = set(s.scalars(select(Label.key).where(Label.collection_id == coll.id)))
    for lab in labels or []:
        if lab["key"] not in have_labels:
            s.add(Label(collection_id=coll.id, key=lab["key"], community=c.community, text=lab.get("text")))
    return coll
