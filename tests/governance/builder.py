"""A small catalog builder for policy tests: collections, items, consent, labels, people and protocols via the ORM."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import (
    Collection,
    Community,
    Consent,
    Declaration,
    Item,
    ItemProtocol,
    Label,
    Membership,
    Person,
    Protocol,
    ProtocolMember,
)
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import compute_manifest

NONCOMMERCIAL = ["community_use", "language_revitalization", "education_outreach", "research", "public_release"]
EVERY = [*NONCOMMERCIAL, "commercial"]


def day(s: str) -> datetime:
    d = date.fromisoformat(s)
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


class Builder:
    """Writes catalog rows directly, so each policy test states exactly the facts it needs."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog

    def collection(self, name: str = "korero", community: str = "A", purposes: list[str] | None = None,
                   citation: str | None = None, embargo: str | None = None, consent: bool = True,
                   declared: bool = True) -> int:
        """A collection; DECLARED: a steward declared no identifiable person in it (so items without a speaker
        pass the unknown_speaker rule and each test states only the facts it is about)."""
        with self.catalog.session() as s:
            c = Collection(name=name, community=community, citation=citation,
                           embargo_until=date.fromisoformat(embargo) if embargo else None)
            s.add(c)
            s.flush()
            if consent:
                s.add(Consent(collection_id=c.id, scope="collective", subject=community, given_by="council",
                              given_at=day("2026-01-01"), purposes=purposes or NONCOMMERCIAL))
            cid = c.id
        if declared:
            self.declare(cid)
        return cid

    def declare(self, coll: int, item: int | None = None, at: str = "2026-01-01", revoked: str | None = None) -> int:
        """A steward's declaration that no identifiable person is in ITEM (or the whole collection)."""
        with self.catalog.session() as s:
            d = Declaration(collection_id=coll, item_id=item, kind="no_identifiable_person", by="aroha",
                            note="checked by listening", at=day(at), revoked_at=day(revoked) if revoked else None)
            s.add(d)
            s.flush()
            return d.id

    def consent(self, coll: int, scope: str, subject: str, purposes: list[str], given: str = "2026-01-01",
                expires: str | None = None, withdrawn: str | None = None) -> int:
        with self.catalog.session() as s:
            c = Consent(collection_id=coll, scope=scope, subject=subject, given_by=subject, given_at=day(given),
                        purposes=purposes, expires_at=day(expires) if expires else None,
                        withdrawn_at=day(withdrawn) if withdrawn else None)
            s.add(c)
            s.flush()
            return c.id

    def item(self, coll: int, ext: str, speaker: str | None = None, embargo: str | None = None,
             sharing: str = "all", meta: dict | None = None, kind: str = "audio") -> int:
        with self.catalog.session() as s:
            it = Item(collection_id=coll, external_id=ext, kind=kind,
                      content_hash=hashlib.sha256(ext.encode()).hexdigest(), size_bytes=1, speaker=speaker,
                      text=f"text of {ext}", meta=meta or {}, sharing=sharing,
                      embargo_until=date.fromisoformat(embargo) if embargo else None)
            s.add(it)
            s.flush()
            return it.id

    def label(self, key: str, item: int | None = None, coll: int | None = None, community: str = "A",
              **fields) -> int:
        with self.catalog.session() as s:
            lab = Label(item_id=item, collection_id=coll, key=key, community=community, data={}, **fields)
            s.add(lab)
            s.flush()
            return lab.id

    def community(self, name: str) -> int:
        with self.catalog.session() as s:
            c = s.query(Community).filter_by(name=name).one_or_none()
            if c is None:
                c = Community(name=name)
                s.add(c)
                s.flush()
            return c.id

    def person(self, name: str, community: str | None = None, role: str = "member") -> int:
        with self.catalog.session() as s:
            p = s.query(Person).filter_by(name=name).one_or_none()
            if p is None:
                p = Person(name=name)
                s.add(p)
                s.flush()
            pid = p.id
        if community:
            cid = self.community(community)
            with self.catalog.session() as s:
                s.add(Membership(community_id=cid, person_id=pid, role=role))
        return pid

    def protocol(self, name: str, community: str = "A", members: tuple[str, ...] = (),
                 items: tuple[int, ...] = ()) -> int:
        cid = self.community(community)
        pids = [self.person(m) for m in members]
        with self.catalog.session() as s:
            p = Protocol(name=name, community_id=cid)
            s.add(p)
            s.flush()
            for pid in pids:
                s.add(ProtocolMember(protocol_id=p.id, person_id=pid))
            for iid in items:
                s.add(ItemProtocol(item_id=iid, protocol_id=p.id))
            return p.id

    def manifest(self, purpose: str = "research", requester: str = "rangi", collections: tuple[str, ...] = ("korero",),
                 as_of: str = "2026-06-01", approved: tuple[str, ...] = ()):
        return compute_manifest(self.catalog, Request(purpose, requester, collections, as_of, approved))

    def verdict(self, ext: str, **req) -> tuple[str | None, str | None]:
        """(rule, reason) for item EXT: (None, None) when included."""
        man = self.manifest(**req)
        for e in man.excluded:
            if e["external_id"] == ext:
                return e["rule"], e["reason"]
        assert any(e["external_id"] == ext for e in man.included), f"{ext} neither included nor excluded"
        return None, None
