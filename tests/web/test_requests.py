"""Training requests in the browser and the API: filed by the signed-in account, decided by the right stewards
on the manifest they reviewed; nobody else sees or decides them."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from hearthkit.governance import audit
from hearthkit.web.app import create_app
from hearthkit.workspace import open_workspace
from tests.web.w2world import A, csrf_of, make_world, sign_in


@pytest.fixture
def app(tiny_asr_model, tmp_path):
    world = make_world(tiny_asr_model[0], tmp_path)
    return create_app(open_workspace(world.root), secret=b"w2-test-secret-" * 3)


def _client(app, role: str | None = None) -> tuple[TestClient, str | None]:
    c = TestClient(app)
    return c, (sign_in(c, role) if role else None)


def _file(c: TestClient, csrf: str, **form) -> int:
    data = {"recipe": "asr", "purpose": "language_revitalization", "collections": ["demo-korero"],
            "csrf_token": csrf, **form}
    r = c.post("/requests", data=data, follow_redirects=False)
    assert r.status_code == 303, r.text
    return int(r.headers["location"].rsplit("/", 1)[1])


def test_researcher_files_and_steward_approves_bound_to_the_hash(app):
    researcher, csrf = _client(app, "researcher")
    assert "demo-korero" in researcher.get("/requests/new").text
    rid = _file(researcher, csrf)
    mine = researcher.get(f"/api/v1/requests/{rid}").json()
    # The requester is the signed-in account; the secret items wait for the community's stewards.
    assert mine["request"]["requester"] == "rangi" and mine["request"]["status"] == "pending"
    assert mine["review"] is None and not mine["can_decide"]
    assert "Items held for your approval" not in researcher.get(f"/requests/{rid}").text

    steward, scsrf = _client(app, "steward_a")
    page = steward.get(f"/requests/{rid}").text
    doc = steward.get(f"/api/v1/requests/{rid}").json()
    held = doc["review"]["held"]
    assert held and all(h["rule"] == "tk:secret_sacred" and h["needs_approval"] == [A] for h in held)
    assert f'/items/{held[0]["item_id"]}/audio' in page  # playable by the steward
    assert doc["review"]["excluded"]["tk:secret_sacred"] == len(held) and doc["can_decide"]
    hidden = re.search(r'name="manifest_hash" value="([0-9a-f]{64})"', page).group(1)
    assert hidden == doc["request"]["manifest_hash"]
    r = steward.post(f"/requests/{rid}/decision", data={"decision": "approve", "manifest_hash": hidden,
                                                       "note": "for the revitalisation class", "csrf_token": scsrf},
                     follow_redirects=False)
    assert r.status_code == 303
    assert researcher.get(f"/api/v1/requests/{rid}").json()["request"]["status"] == "approved"
    cat = app.state.catalog
    approval = audit.events(cat, "approval")[-1]
    assert approval["actor"] == "whetu" and approval["data"]["manifest"] == hidden


def test_a_stale_hash_is_refused_with_a_clear_message_and_nothing_changes(app):
    researcher, csrf = _client(app, "researcher")
    rid = _file(researcher, csrf)
    steward, scsrf = _client(app, "steward_a")
    r = steward.post(f"/requests/{rid}/decision", data={"decision": "approve", "manifest_hash": "0" * 64,
                                                       "csrf_token": scsrf})
    assert r.status_code == 409
    assert "not the one you reviewed" in r.text and "Traceback" not in r.text
    assert steward.get(f"/api/v1/requests/{rid}").json()["request"]["status"] == "pending"
    r = steward.post(f"/api/v1/requests/{rid}/decision", json={"decision": "approve", "manifest_hash": "1" * 64},
                     headers={"X-CSRF-Token": scsrf})
    assert r.status_code == 409 and "reviewed" in r.json()["error"]
    assert audit.events(app.state.catalog, "approval") == []


def test_other_stewards_and_strangers_neither_see_nor_decide(app):
    researcher, csrf = _client(app, "researcher")
    rid = _file(researcher, csrf)
    manifest = researcher.get(f"/api/v1/requests/{rid}").json()["request"]["manifest_hash"]
    for role in ("steward_b", "registered", "member"):
        c, ccsrf = _client(app, role)
        assert c.get(f"/requests/{rid}").status_code == 404
        assert c.get("/api/v1/requests").json()["requests"] == []
        r = c.post(f"/requests/{rid}/decision", data={"decision": "approve", "manifest_hash": manifest,
                                                     "csrf_token": ccsrf})
        assert r.status_code == 404 and "demo-korero" not in r.text and "rangi" not in r.text
    # The requester cannot approve their own request.
    r = researcher.post(f"/requests/{rid}/decision", data={"decision": "approve", "manifest_hash": manifest,
                                                          "csrf_token": csrf})
    assert r.status_code == 403
    assert researcher.get(f"/api/v1/requests/{rid}").json()["request"]["status"] == "pending"


def test_bad_input_and_missing_csrf_change_nothing(app):
    researcher, csrf = _client(app, "researcher")
    for form, message in (({"collections": ["nope"]}, "not a collection you may see"),
                          ({"purpose": "profit"}, "purpose 'profit'"), ({"recipe": "x"}, "recipe 'x'"),
                          ({"collections": []}, "choose at least one collection")):
        data = {"recipe": "asr", "purpose": "research", "collections": ["demo-korero"], "csrf_token": csrf, **form}
        r = researcher.post("/requests", data=data)
        assert r.status_code == 400 and message in html.unescape(r.text), r.text
    r = researcher.post("/requests", data={"recipe": "asr", "purpose": "research", "collections": ["demo-korero"]})
    assert r.status_code == 403
    assert researcher.get("/api/v1/requests").json()["requests"] == []
    assert researcher.get("/requests/99999").status_code == 404
    anonymous = TestClient(app)
    assert anonymous.get("/requests", follow_redirects=False).status_code == 303
    assert anonymous.get("/api/v1/requests").status_code == 401


def test_api_twin_files_with_a_token_and_scope_is_enforced(app):
    from hearthkit.governance import identity

    cat = app.state.catalog
    _, read_only = identity.create_token(cat, "rangi", "reader", ["read"])
    _, requester = identity.create_token(cat, "rangi", "filer", ["read", "request"])
    body = {"purpose": "research", "collections": ["demo-korero"], "recipe": "asr"}
    c = TestClient(app)
    r = c.post("/api/v1/requests", json=body, headers={"Authorization": f"Bearer {read_only}"})
    assert r.status_code == 403
    r = c.post("/api/v1/requests", json=body, headers={"Authorization": f"Bearer {requester}"})
    assert r.status_code == 201 and r.json()["request"]["requester"] == "rangi"
    _, approver = identity.create_token(cat, "whetu", "approver", ["read"])
    rid = r.json()["request"]["id"]
    r = c.post(f"/api/v1/requests/{rid}/decision", json={"decision": "approve", "manifest_hash": "0" * 64},
               headers={"Authorization": f"Bearer {approver}"})
    assert r.status_code == 403 and "approve" in r.json()["error"]


def test_csrf_of_pages_is_bound_to_the_session(app):
    researcher, csrf = _client(app, "researcher")
    other, _ = _client(app, "steward_a")
    foreign = csrf_of(other.get("/requests").text)
    r = researcher.post("/requests", data={"recipe": "asr", "purpose": "research", "collections": ["demo-korero"],
                                           "csrf_token": foreign})
    assert r.status_code == 403


def test_a_request_on_a_deleted_collection_is_explained_and_cannot_be_decided(app):
    from hearthkit.catalog.models import Collection

    researcher, csrf = _client(app, "researcher")
    rid = _file(researcher, csrf)
    steward, scsrf = _client(app, "steward_a")
    manifest = steward.get(f"/api/v1/requests/{rid}").json()["request"]["manifest_hash"]
    with app.state.catalog.session() as s:  # the collection is renamed away: the request names a missing one
        s.query(Collection).filter_by(name="demo-korero").one().name = "demo-korero-old"
    page = steward.get(f"/requests/{rid}")
    assert page.status_code == 200 and "no longer in the catalog" in html.unescape(page.text)
    assert 'name="manifest_hash"' not in page.text  # no decision form
    r = steward.post(f"/requests/{rid}/decision", data={"decision": "approve", "manifest_hash": manifest,
                                                       "csrf_token": scsrf})
    assert r.status_code == 400 and "Traceback" not in r.text
    assert steward.get(f"/api/v1/requests/{rid}").json()["request"]["status"] == "pending"
    assert audit.events(app.state.catalog, "approval") == []
