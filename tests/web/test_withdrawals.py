"""Withdrawal in the browser: a steward records it with the library's function; every affected model shows it."""

from __future__ import annotations

import html

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hearthkit.catalog.models import Item, Withdrawal
from hearthkit.governance import audit
from hearthkit.web.app import create_app
from hearthkit.workspace import open_workspace
from tests.web.w2world import make_world, sign_in


@pytest.fixture
def app(tiny_asr_model, tmp_path):
    world = make_world(tiny_asr_model[0], tmp_path)
    return create_app(open_workspace(world.root), secret=b"w2-test-secret-" * 3)


def _speaker(app) -> str:
    with app.state.catalog.session() as s:
        return s.scalar(select(Item.speaker).where(Item.speaker.is_not(None)).order_by(Item.id).limit(1))


def test_steward_records_a_withdrawal_and_the_model_needs_retraining(app):
    c = TestClient(app)
    csrf = sign_in(c, "steward_a")
    speaker = _speaker(app)
    r = c.post("/withdrawals", data={"collection": "demo-korero", "scope": "speaker", "subject": speaker,
                                     "reason": "asked at the hui", "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    page = c.get(r.headers["location"]).text
    assert "tiny-asr" in page and "needs retrain" in page and "Retrain without the withdrawn items" in page
    doc = c.get("/api/v1/models/tiny-asr").json()
    assert doc["status"] == "needs retrain" and doc["impact"]["withdrawals"][0]["reason"] == "asked at the hui"
    ev = audit.events(app.state.catalog, "withdrawal")[-1]
    assert ev["actor"] == "whetu" and ev["data"]["subject"] == speaker
    listing = c.get("/api/v1/withdrawals").json()["withdrawals"]
    assert listing[0]["models"][0]["model"] == "tiny-asr"


def test_others_cannot_withdraw_and_bad_input_changes_nothing(app):
    speaker = _speaker(app)
    for role in ("steward_b", "researcher", "member"):
        c = TestClient(app)
        csrf = sign_in(c, role)
        r = c.post("/withdrawals", data={"collection": "demo-korero", "scope": "speaker", "subject": speaker,
                                         "csrf_token": csrf})
        assert r.status_code == 404, (role, r.text)
        assert c.get("/api/v1/withdrawals").json()["withdrawals"] == []
    c = TestClient(app)
    csrf = sign_in(c, "steward_a")
    for form, msg in (({"scope": "collection"}, "scope: choose speaker"), ({"subject": " "}, "subject: name"),
                      ({"subject": "nobody-here"}, "no speaker 'nobody-here'")):
        data = {"collection": "demo-korero", "scope": "speaker", "subject": speaker, "csrf_token": csrf, **form}
        r = c.post("/withdrawals", data=data)
        assert r.status_code == 400 and msg in html.unescape(r.text) and "Traceback" not in r.text
    assert c.post("/withdrawals", data={"collection": "demo-korero", "scope": "speaker",
                                        "subject": speaker}).status_code == 403  # no CSRF token
    with app.state.catalog.session() as s:
        assert s.scalar(select(Withdrawal.id)) is None
        assert s.scalar(select(Item.id).where(Item.withdrawn_at.is_not(None))) is None
    assert c.get("/api/v1/models/tiny-asr").json()["status"] == "active"


def test_retrain_from_the_withdrawal_page_supersedes_the_model(app):
    """"Retrain" runs the library's retrain (as `hearth retrain`) as a job; the old model ends revoked."""
    import time

    c = TestClient(app)
    csrf = sign_in(c, "steward_a")
    speaker = _speaker(app)
    c.post("/withdrawals", data={"collection": "demo-korero", "scope": "speaker", "subject": speaker,
                                 "csrf_token": csrf})
    r = c.post("/models/tiny-asr/retrain", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    job = r.headers["location"].rsplit("/", 1)[1]
    for _ in range(1200):
        doc = c.get(f"/api/v1/jobs/{job}").json()
        if doc["status"] != "running":
            break
        time.sleep(0.5)
    assert doc["status"] == "done", doc
    new = doc["result"]["model"]
    assert c.get("/api/v1/models/tiny-asr").json()["status"] == "revoked"
    assert c.get(f"/api/v1/models/{new}").json()["status"] == "active"
    # A steward of another community cannot start one.
    other = TestClient(app)
    ocsrf = sign_in(other, "steward_b")
    assert other.post(f"/models/{new}/retrain", data={"csrf_token": ocsrf}).status_code == 404


def test_steward_revokes_a_model_from_the_withdrawal_and_model_pages(app):
    """"Revoke" calls the library's revoke_model (as `hearth models revoke`); refusals change nothing."""
    c = TestClient(app)
    csrf = sign_in(c, "steward_a")
    r = c.post("/withdrawals", data={"collection": "demo-korero", "scope": "speaker", "subject": _speaker(app),
                                     "reason": "asked at the hui", "csrf_token": csrf}, follow_redirects=False)
    form = 'action="/models/tiny-asr/revoke"'
    assert form in c.get(r.headers["location"]).text  # on the affected model's row
    assert form in c.get("/models/tiny-asr").text and "Reason for revoking" in c.get("/models/tiny-asr").text
    member = TestClient(app)
    sign_in(member, "member")
    assert form not in member.get("/models/tiny-asr").text  # a member sees the model, not the form

    def unchanged():
        assert c.get("/api/v1/models/tiny-asr").json()["status"] == "needs retrain"
        assert audit.events(app.state.catalog, "revocation") == []

    # A steward of B, editing the model name into the form's URL and the API's, is told no such model.
    other = TestClient(app)
    ocsrf = sign_in(other, "steward_b")
    assert other.post("/models/tiny-asr/revoke", data={"reason": "not yours", "csrf_token": ocsrf}).status_code == 404
    assert other.post("/api/v1/models/tiny-asr/revoke", json={"reason": "not yours"},
                      headers={"X-CSRF-Token": ocsrf}).status_code == 404
    unchanged()
    # A forged or missing CSRF token, and a missing reason, are refused.
    assert c.post("/models/tiny-asr/revoke", data={"reason": "x", "csrf_token": "0" * len(csrf)}).status_code == 403
    assert c.post("/models/tiny-asr/revoke", data={"reason": "x"}).status_code == 403
    r = c.post("/models/tiny-asr/revoke", data={"reason": "  ", "csrf_token": csrf})
    assert r.status_code == 400 and "needs a reason" in html.unescape(r.text) and "Traceback" not in r.text
    unchanged()

    r = c.post("/models/tiny-asr/revoke", data={"reason": "the council decided", "csrf_token": csrf},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/models/tiny-asr"
    page = html.unescape(c.get(r.headers["location"]).text)
    assert "revoked by whetu: the council decided" in page and form not in page
    assert c.get("/api/v1/models/tiny-asr").json()["status"] == "revoked"
    ev = audit.events(app.state.catalog, "revocation")
    assert len(ev) == 1 and ev[0]["actor"] == "whetu" and ev[0]["data"]["reason"] == "the council decided"
    r = c.post("/api/v1/models/tiny-asr/revoke", json={"reason": "again"}, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 400 and "already revoked" in r.text
    assert len(audit.events(app.state.catalog, "revocation")) == 1


def test_derived_files_the_withdrawal_could_not_erase_are_shown_to_the_steward(app):
    """A run manifest that cannot be parsed may keep the withdrawn items' words: every surface names it."""
    broken = app.state.ws.root / "runs" / "cut" / "manifest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"included": [{"collection": "demo-korero", "text": "kupu"', encoding="utf-8")  # cut short
    c = TestClient(app)
    csrf = sign_in(c, "steward_a")
    speaker = _speaker(app)
    r = c.post("/withdrawals", data={"collection": "demo-korero", "scope": "speaker", "subject": speaker,
                                     "csrf_token": csrf}, follow_redirects=False)
    page = html.unescape(r.text)
    assert r.status_code == 200 and "Not erased" in page and "runs/cut/manifest.json: " in page
    doc = c.post("/api/v1/withdrawals", json={"collection": "demo-korero", "scope": "speaker", "subject": speaker},
                 headers={"X-CSRF-Token": csrf}).json()
    assert doc["unreadable"] and doc["unreadable"][0].startswith("runs/cut/manifest.json: ")
    with app.state.catalog.session() as s:
        first, second = s.scalars(select(Item.id).where(Item.withdrawn_at.is_(None)).order_by(Item.id).limit(2))
    doc = c.post(f"/api/v1/items/{first}/withdraw", data={"reason": "asked", "csrf_token": csrf}).json()
    assert doc["items"] == 1 and doc["unreadable"][0].startswith("runs/cut/manifest.json: ")
    r = c.post(f"/items/{second}/withdraw", data={"reason": "asked", "csrf_token": csrf}, follow_redirects=False)
    page = html.unescape(r.text)
    assert r.status_code == 200 and "Not erased" in page and "runs/cut/manifest.json: " in page
    # With nothing left unreadable, the form leads to the withdrawal's page as before.
    broken.unlink()
    r = c.post("/withdrawals", data={"collection": "demo-korero", "scope": "speaker", "subject": speaker,
                                     "csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303 and "Not erased" not in c.get(r.headers["location"]).text
