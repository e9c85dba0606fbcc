"""archive.yaml's collection and consent in the catalog: one writer for every importer."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Label
from hearthkit.errors import HearthError
from hearthkit.ingest.archive import ArchiveInfo, ConsentEntry, collection_with_consent


def _info(restricted: bool = False, community: str = "Toy community") -> ArchiveInfo:
    return ArchiveInfo.model_validate({
        "collection": {"name": "toy", "community": community, "restricted": restricted},
        "collective_consent": [{"subject": "Toy community", "given_by": "council", "given_at": "2026-01-05",
                                "purposes": ["research"]}]})


def test_consent_once_restriction_only_tightens_and_community_is_checked(tmp_path: Path):
    cat = Catalog.open(f"sqlite:///{tmp_path / 'c.db'}", create=True)
    sheet = [ConsentEntry(subject="spk1", given_by="spk1", given_at=date(2026, 2, 1), purposes=["research"])] * 3
    with cat.session() as s:
        collection_with_consent(s, _info(), [{"key": "tk:attribution"}], individual=sheet)
    with cat.session() as s:  # the same archive again, now restricted by its steward
        collection_with_consent(s, _info(restricted=True), [{"key": "tk:attribution"}], individual=sheet[:1])
    with cat.session() as s:  # an old archive.yaml without the restriction does not lift it
        collection_with_consent(s, _info(restricted=False))
    with cat.session() as s:
        assert s.scalar(select(Collection.restricted)) is True
        consent = s.execute(select(Consent.scope, Consent.subject)).all()
        assert sorted(consent) == [("collective", "Toy community"), ("individual", "spk1")]  # each once
        assert s.scalars(select(Label.key)).all() == ["tk:attribution"]
    with pytest.raises(HearthError, match="collection 'toy' belongs to Toy community, not Other"):
        with cat.session() as s:
            collection_with_consent(s, _info(community="Other"))
