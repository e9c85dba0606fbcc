"""The steward's review of a request: counts by reason, per speaker, inheritance, held items of their own only."""

from __future__ import annotations

import pytest

from hearthkit.catalog.models import Collection
from hearthkit.errors import HearthError
from hearthkit.governance import requests as rq
from hearthkit.governance.review import review


def _setup(b):
    a = b.collection("korero", community="A")
    bb = b.collection("waiata", community="B")
    b.item(a, "plain", speaker="s1")
    b.item(a, "plain2", speaker="s2")  # no individual consent: excluded by a rule no approval lifts
    b.consent(a, "individual", "s1", ["research"])
    b.consent(bb, "individual", "s3", ["research"])
    b.label("tk:secret_sacred", item=b.item(a, "sacred", speaker="s1"), community="A")
    b.label("tk:culturally_sensitive", item=b.item(bb, "b-held", speaker="s3"), community="B")
    b.item(bb, "b-plain", speaker="s3")
    b.person("aroha", "A", "steward")
    b.person("ben", "B", "steward")
    return rq.create_request(b.catalog, "research", "rangi", ["korero", "waiata"], "asr", "2026-06-01")[0]


def test_review_summarises_and_lists_only_my_held_items(b, catalog):
    req = _setup(b)
    mine = review(catalog, req.id, {"A"})
    assert not mine.stale and mine.manifest_hash == req.manifest_hash
    # once approved: plain (s1 consented), sacred, b-held, b-plain; plain2 lacks individual consent.
    assert mine.included == 4
    assert mine.excluded == {"individual_consent": 1, "tk:culturally_sensitive": 1, "tk:secret_sacred": 1}
    assert mine.per_speaker == {"s1": 2, "s3": 2} and mine.per_dialect == {"–": 4}
    assert "tk:secret_sacred" in mine.restrictions and "tk:culturally_sensitive" in mine.restrictions
    assert [h["external_id"] for h in mine.held] == ["sacred"] and mine.held_elsewhere == 1
    theirs = review(catalog, req.id, {"B"})
    assert [h["external_id"] for h in theirs.held] == ["b-held"] and theirs.held_elsewhere == 1
    assert review(catalog, req.id, set()).held == []


def test_review_reports_a_stale_request_and_a_deleted_collection(b, catalog):
    req = _setup(b)
    b.item(1, "late")  # the catalog changed after the request: the stored hash no longer matches
    assert review(catalog, req.id, {"A"}).stale
    with catalog.session() as s:
        s.query(Collection).filter_by(name="waiata").update({"name": "gone"})
    with pytest.raises(HearthError, match="'waiata', which is no longer in the catalog"):
        review(catalog, req.id, {"A"})
    with pytest.raises(HearthError, match="does not exist"):
        review(catalog, 999, {"A"})
