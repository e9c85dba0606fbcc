"""The archive description (archive.yaml): collection, licence, citation and consent records."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError

from hearthkit.errors import HearthError
from hearthkit.governance.vocabulary import Purpose


class ConsentEntry(BaseModel):
    """One consent record as written in archive.yaml."""

    subject: str = Field(description="Community name (collective) or speaker id (individual).")
    given_by: str = Field(description="Who gave consent (a person or a council).")
    given_at: date = Field(description="Date consent was given.")
    purposes: list[Purpose] = Field(description="Purposes consented to; commercial is never implied.")
    expires_at: date | None = Field(None, description="Consent ends on this date.")
    evidence: str | None = Field(None, description="Reference to the signed form or recording of consent.")


class CollectionInfo(BaseModel):
    """The collection an archive is imported into."""

    name: str = Field(description="Collection name, unique in the catalog.")
    community: str = Field(description="The community that holds authority over the collection.")
    licence: str | None = Field(None, description="Licence or terms of use.")
    citation: str | None = Field(None, description="How to cite / attribute the collection.")
    restricted: bool = Field(False, description="Steward marked the collection restricted.")


class ArchiveInfo(BaseModel):
    """archive.yaml: the collection and the consent that comes with an archive folder."""

    collection: CollectionInfo
    collective_consent: list[ConsentEntry] = Field(default_factory=list)
    individual_consent: list[ConsentEntry] = Field(default_factory=list)


def read_archive_info(folder: Path) -> ArchiveInfo:
    """Read FOLDER/archive.yaml or fail naming the file and field."""
    path = folder / "archive.yaml"
    if not path.is_file():
        raise HearthError(f"{path}: missing; an archive needs archive.yaml naming its collection and consent")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise HearthError(f"{path}: not valid UTF-8 YAML ({str(exc).splitlines()[0]})") from None
    try:
        return ArchiveInfo.model_validate(data or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise HearthError(f"{path}: field {field}: {err['msg']}") from None
