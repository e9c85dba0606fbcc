"""The audit page: stewards' events filtered and paged; verify reports intact, tampered at N, anchor mismatch."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from hearthkit.web.app import create_app
from hearthkit.workspace import open_workspace
from tests.web.w2world import make_world, sign_in


@pytest.fixture
def app(tiny_asr_model, tmp_path):
    world = make_world(tiny_asr_model[0], tmp_path)
    return create_app(open_workspace(world.root), secret=b"w2-test-secret-" * 3)


def test_log_filters_and_pages(app):
    c = TestClient(app)
    sign_in(c, "steward_a")
    doc = c.get("/api/v1/audit").json()
    kinds = {e["kind"] for e in doc["events"]}
    # Training of a model on A's data shows too: its manifest, its data reads, its export.
    assert {"import", "person", "manifest", "data_access", "export"} <= kinds
    assert doc["page"]["total"] >= len(doc["events"])
    only = c.get("/api/v1/audit?kind=person&actor=whetu").json()
    assert only["events"] and {(e["kind"], e["actor"]) for e in only["events"]} == {("person", "whetu")}
    assert c.get("/api/v1/audit?since=2999-01-01").json()["events"] == []
    r = c.get("/audit?since=yesterday")
    assert r.status_code == 400 and "since: expected a date" in r.text
    assert c.get("/audit?kind=nonsense").status_code == 400
    # Steward of B sees none of A's events; a researcher has no audit page.
    b = TestClient(app)
    sign_in(b, "steward_b")
    assert all(e["data"].get("community") == "Other Community" or e["data"].get("communities") == ["Other Community"]
               for e in b.get("/api/v1/audit").json()["events"])  # the latter: B's people's own sign-ins
    r = TestClient(app)
    sign_in(r, "researcher")
    assert r.get("/audit").status_code == 403 and r.get("/audit/verify").status_code == 403


def test_verify_intact_then_tampered_then_anchor_mismatch(app):
    c = TestClient(app)
    sign_in(c, "steward_a")
    ok = c.get("/api/v1/audit/verify").json()
    assert ok["state"] == "intact", ok
    assert "The log is intact." in c.get("/audit/verify").text
    engine = app.state.catalog.engine
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor = 'someone else' WHERE seq = 2"))
    bad = c.get("/api/v1/audit/verify").json()
    assert bad["state"] == "tampered" and bad["event"] == 2
    assert "tampered with at event 2" in c.get("/audit/verify").text
    with engine.begin() as conn:  # a clean chain cut at its tail: only the anchor outside the workspace sees it
        conn.execute(text("DELETE FROM audit_events WHERE seq >= 2"))
    cut = c.get("/api/v1/audit/verify").json()
    assert cut["state"] == "anchor_mismatch" and cut["anchor"]["state"] == "truncated"
    assert "does not match its anchor" in c.get("/audit/verify").text


def test_log_pages_hold_every_event_once(app, monkeypatch):
    from hearthkit.web.routes import audit as audit_routes

    monkeypatch.setattr(audit_routes, "PER_PAGE", 3)
    c = TestClient(app)
    sign_in(c, "steward_a")
    first = c.get("/api/v1/audit").json()
    pages = first["page"]["pages"]
    assert pages >= 2 and len(first["events"]) == 3
    seen = [e["seq"] for p in range(1, pages + 1) for e in c.get(f"/api/v1/audit?page={p}").json()["events"]]
    assert len(seen) == first["page"]["total"] == len(set(seen)) and seen == sorted(seen, reverse=True)
    assert 'rel="next"' in c.get("/audit").text
