"""The catalog, the policy, requests and the audit chain behave the same on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import inspect

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item
from hearthkit.governance import audit
from hearthkit.governance import requests as rq

sys.path.insert(0, str(Path(__file__).parents[1] / "governance"))
from builder import Builder  # noqa: E402


@pytest.fixture
def b(db_url):
    cat = Catalog.open(db_url, create=True)
    yield Builder(cat)
    cat.close()


def test_new_catalog_is_at_head_with_every_table(b):
    assert not b.catalog.needs_upgrade()
    tables = set(inspect(b.catalog.engine).get_table_names())
    assert {"communities", "people", "memberships", "protocols", "protocol_members", "item_protocols", "requests",
            "approvals", "audit_events", "items", "labels", "consents"} <= tables


def test_full_model_round_trip_and_policy(b):
    c = b.collection(citation="cite", embargo=None)
    b.consent(c, "individual", "mere", ["research"], expires="2027-01-01")
    i1 = b.item(c, "a", speaker="mere")
    i2 = b.item(c, "b", sharing="any", embargo="2026-09-01")
    i3 = b.item(c, "c")
    b.protocol("women", members=("mere",), items=(i1,))
    b.label("tk:seasonal", item=i3, season_from="05-01", season_to="08-31", text="Kōrero o te raumati",
            language="mi", version="1", hub_id="hub-123")
    b.label("tk:multiple_community", item=i3, communities=["B"])
    man = b.manifest(requester="mere")
    assert [e["external_id"] for e in man.included] == ["a"]
    assert {e["external_id"]: e["rule"] for e in man.excluded} == {"b": "embargo", "c": "tk:multiple_community"}
    assert b.manifest(requester="mere").to_json() == man.to_json()  # byte-identical on this backend
    full = b.manifest(requester="mere", approved=("A", "B"), as_of="2026-09-02")
    assert [e["external_id"] for e in full.included] == ["a", "b"]  # c is now out of season
    assert [e["rule"] for e in full.excluded] == ["tk:seasonal"]
    del i2


def test_requests_approvals_and_audit_chain(b):
    c = b.collection()
    b.label("tk:secret_sacred", item=b.item(c, "s"))
    b.person("aroha", "A", "steward")
    req, _ = rq.create_request(b.catalog, "research", "rangi", ["korero"], "asr", date.today().isoformat())
    assert req.status == "pending"
    assert rq.decide(b.catalog, req.id, "aroha", "approve").status == "approved"
    v = audit.verify(b.catalog)
    assert v.ok and [e["kind"] for e in audit.events(b.catalog)] == ["request", "approval"]


def test_scrub_leaves_no_old_copy_of_a_changed_row(b, tmp_path: Path):
    words = "he kōrero tapu mō te whare tupuna".encode()  # what sealing moves off a row
    c = b.collection()
    iid = b.item(c, "a")
    with b.catalog.session() as s:
        s.get(Item, iid).text = words.decode()
    with b.catalog.session() as s:
        s.get(Item, iid).text = None
    b.catalog.scrub()
    with b.catalog.engine.connect() as conn:
        if b.catalog.engine.dialect.name == "sqlite":
            files = [Path(b.catalog.engine.url.database + suffix) for suffix in ("", "-wal", "-journal")]
        else:  # the table's pages as the server holds them now (its WAL is the server's; see docs/importing.md)
            conn.exec_driver_sql("CHECKPOINT")  # write the table's pages out, as the server would in time
            data = Path(conn.exec_driver_sql("SHOW data_directory").scalar())
            files = [data / conn.exec_driver_sql("SELECT pg_relation_filepath('items')").scalar()]
            if not os.access(data, os.R_OK):
                pytest.skip(f"{data}: the server's data folder is not readable by this user")
    present = [f for f in files if f.is_file()]
    assert present and not any(words in f.read_bytes() for f in present)
