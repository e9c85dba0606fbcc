"""Browsing access as a query filter, on SQLite and PostgreSQL: levels, protocols (catalog, labels and the sheet's
column), the most restricted reading of unknown or conflicting facts, and counts that never include hidden items."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Community, Item, ItemProtocol, Label, Protocol
from hearthkit.governance import browse
from hearthkit.governance.access import Viewer
from tests.catalog.conftest import db_url  # noqa: F401  (the two-backend fixture)

ANON = Viewer()
REG = Viewer(signed_in=True, name="reg")
MEMBER = Viewer(signed_in=True, communities=frozenset({"A"}), name="mem")
P1 = Viewer(signed_in=True, communities=frozenset({"A"}), protocols=frozenset({"p1"}), name="p1")
P12 = Viewer(signed_in=True, communities=frozenset({"A"}), protocols=frozenset({"p1", "p2"}), name="p12")
STEWARD = Viewer(signed_in=True, communities=frozenset({"A"}), stewards_of=frozenset({"A"}), name="st")
OTHER_STEWARD = Viewer(signed_in=True, communities=frozenset({"B"}), stewards_of=frozenset({"B"}), name="stb")


@pytest.fixture
def cat(db_url):  # noqa: F811
    c = Catalog.open(db_url, create=True)
    yield c
    c.close()


def build(cat: Catalog) -> dict[str, int]:
    """Items named for what protects them; returns external id -> id."""
    ids = {}
    with cat.session() as s:
        s.add_all([Community(name="A"), Community(name="B")])
        s.flush()
        p1, p2 = Protocol(name="p1", community_id=1), Protocol(name="p2", community_id=1)
        s.add_all([p1, p2])
        s.flush()
        colls = {}
        for name, access in (("open", "open"), ("reg", "registered"), ("comm", "community"), ("prot", "protocol"),
                             ("typo", "Open "), ("sacred", "open")):
            c = Collection(name=name, community="A", access=access)
            s.add(c)
            s.flush()
            colls[name] = c
        s.add(Label(collection_id=colls["sacred"].id, key="tk:secret_sacred", community="A", data={}))
        s.add(Label(collection_id=colls["reg"].id, key="tk:women_general", community="A", protocol_id=p2.id,
                    data={}))

        def item(ext, coll, access=None, meta=None, sharing="all", withdrawn=False):
            it = Item(collection_id=colls[coll].id, external_id=ext, kind="text", content_hash=ext.ljust(64, "0"),
                      size_bytes=1, meta=meta or {}, access=access, sharing=sharing, text=f"word {ext}",
                      withdrawn_at=datetime.now(UTC) if withdrawn else None)
            s.add(it)
            s.flush()
            ids[ext] = it.id
            return it

        item("plain-open", "open")
        item("open-item-in-comm", "comm", access="open")  # the collection's level is stricter: it wins
        item("comm-item-in-open", "open", access="community")
        item("reg-p2-label", "reg")  # collection label with protocol p2
        item("comm-plain", "comm")
        item("meta-p1", "open", meta={"protocols": ["p1"]})
        item("meta-p1-p2", "open", meta={"protocols": ["p1", "p2"]})
        item("meta-string", "open", meta={"protocols": "p1"})  # malformed: a name, not a list
        item("meta-empty", "open", meta={"protocols": []})
        item("meta-null", "open", meta={"protocols": None})
        for ext, sharing in (("ip-any", "any"), ("ip-all", "all"), ("ip-odd", "xyz")):
            it = item(ext, "open", sharing=sharing)
            s.add_all([ItemProtocol(item_id=it.id, protocol_id=p1.id), ItemProtocol(item_id=it.id, protocol_id=p2.id)])
        it = item("ip-p1", "prot")
        s.add(ItemProtocol(item_id=it.id, protocol_id=p1.id))
        item("prot-none", "prot")  # protocol level, no protocol recorded: stewards only
        item("typo-level", "typo")  # an unknown level reads as protocol
        item("item-typo", "open", access="public")
        item("in-sacred", "sacred")
        item("withdrawn", "open", withdrawn=True)
        lab_item = item("item-label", "open")
        s.add(Label(item_id=lab_item.id, key="tk:men_restricted", community="A", data={}))
        b = Collection(name="b", community="B", access="community")
        s.add(b)
        s.flush()
        colls["b"] = b
        item("b-item", "b")
    return ids


def seen(cat: Catalog, viewer: Viewer) -> set[str]:
    rows, total = browse.search(cat, viewer, "word", 0, 1000)
    assert total == len(rows)
    return {r["external_id"] for r in rows}


EVERYONE = {"plain-open", "meta-empty", "meta-null"}
SIGNED = EVERYONE
MEMBERS = SIGNED | {"comm-item-in-open", "comm-plain", "open-item-in-comm"}
INSIDE_P1 = MEMBERS | {"meta-p1", "meta-string", "ip-any", "ip-p1"}
INSIDE_P12 = INSIDE_P1 | {"meta-p1-p2", "ip-all", "ip-odd", "reg-p2-label"}
ALL_A = INSIDE_P12 | {"prot-none", "typo-level", "item-typo", "in-sacred", "withdrawn", "item-label"}


@pytest.mark.parametrize("viewer,expected", [
    (ANON, EVERYONE), (REG, SIGNED), (MEMBER, MEMBERS), (P1, INSIDE_P1), (P12, INSIDE_P12), (STEWARD, ALL_A),
    (OTHER_STEWARD, EVERYONE | {"b-item"}),
])
def test_what_each_viewer_sees(cat, viewer, expected):
    ids = build(cat)
    assert seen(cat, viewer) == expected
    for ext, iid in ids.items():
        assert (browse.item(cat, viewer, iid) is not None) == (ext in expected), ext


def test_protocols_are_not_granted_to_anonymous_even_by_name(cat):
    build(cat)
    assert seen(cat, Viewer(protocols=frozenset({"p1", "p2"}))) == EVERYONE


def test_collection_list_and_counts_come_from_the_filter(cat):
    build(cat)
    rows, total = browse.collections(cat, MEMBER, 0, 100)
    by_name = {r["name"]: r["items"] for r in rows}
    assert total == len(rows)
    # "prot", "typo", and "sacred" and "reg" (protocol labels on the collection) admit no plain member and hold
    # nothing they may see: not listed at all.
    assert set(by_name) == {"open", "comm"}
    assert by_name["open"] == 4 and by_name["comm"] == 2
    rows, _ = browse.collections(cat, P1, 0, 100)
    assert {r["name"]: r["items"] for r in rows}["prot"] == 1
    assert browse.collection(cat, ANON, 3, 0, 10) is None  # comm, by id


def test_pagination_is_bounded(cat):
    build(cat)
    first, total = browse.search(cat, STEWARD, "word", 0, 5)
    rest, _ = browse.search(cat, STEWARD, "word", 5, 100)
    assert len(first) == 5 and total == len(ALL_A)
    assert {r["external_id"] for r in first + rest} == ALL_A


def test_search_wildcards_are_literal(cat):
    build(cat)
    assert browse.search(cat, STEWARD, "%", 0, 10) == ([], 0)
    assert browse.search(cat, STEWARD, "_", 0, 10)[1] == 0
    assert browse.search(cat, STEWARD, "   ", 0, 10) == ([], 0)


def test_item_page_names_the_level_it_is_browsed_at(cat):
    ids = build(cat)
    assert browse.item(cat, STEWARD, ids["open-item-in-comm"])["access"] == "community"
    assert browse.item(cat, STEWARD, ids["meta-p1"])["access"] == "protocol"
    assert browse.item(cat, STEWARD, ids["in-sacred"])["access"] == "protocol"
    assert browse.item(cat, STEWARD, ids["reg-p2-label"])["access"] == "protocol"
    assert browse.item(cat, STEWARD, ids["item-typo"])["access"] == "protocol"
    assert browse.item(cat, STEWARD, ids["plain-open"])["access"] == "open"
