"""Sign-ins, sign-outs and API tokens made in the browser are audit events a community's stewards can read."""

from __future__ import annotations

from fastapi.testclient import TestClient

from hearthkit.governance import audit
from tests.web.conftest import NAMES, PASSWORD, csrf, login

TYPED = "wrong-horse-battery-1c9e"  # a wrong password typed into the form; it must be stored nowhere


def test_browser_identity_events_are_audited_and_shown_to_stewards_without_secrets(client, webws):
    member = TestClient(client.app)
    r = member.post("/login", data={"name": NAMES["member"], "password": TYPED, "csrf_token": csrf(member)},
                    follow_redirects=False)
    assert r.status_code == 401
    r = member.post("/login", data={"name": "no such person", "password": TYPED, "csrf_token": csrf(member)},
                    follow_redirects=False)
    assert r.status_code == 401
    login(member, "member")
    token = csrf(member, "/tokens")
    created = member.post("/api/v1/tokens", json={"name": "my script", "scopes": ["read"], "days": 3},
                          headers={"X-CSRF-Token": token}).json()
    assert member.post(f"/api/v1/tokens/{created['id']}/revoke", headers={"X-CSRF-Token": token}).status_code == 200
    assert member.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303

    cat = webws.catalog()
    try:
        events = [e for e in audit.events(cat) if e["kind"] in {"sign_in", "sign_in_refused", "sign_out",
                                                                  "api_token"}]
        assert audit.verify(cat).ok
    finally:
        cat.close()
    mine = [(e["kind"], e["data"].get("action"), e["data"].get("name")) for e in events
            if e["data"].get("person") == NAMES["member"] or e["data"].get("name") == "no such person"]
    assert mine == [("sign_in_refused", None, NAMES["member"]), ("sign_in_refused", None, "no such person"),
                    ("sign_in", None, None), ("api_token", "create", "my script"),
                    ("api_token", "revoke", "my script"), ("sign_out", None, None)]
    # The test client's address is what the browser's socket gives; the wrong password is nowhere in the log.
    assert {e["data"]["client"] for e in events if "client" in e["data"]} == {"testclient"}
    assert TYPED not in str(events) and created["token"] not in str(events)

    # Community A's steward sees the member's sign-ins on the audit page; B's steward sees none of them.
    steward = login(TestClient(client.app), "steward_a")
    seen = steward.get("/api/v1/audit?kind=sign_in_refused").json()["events"]
    assert [e["data"]["name"] for e in seen] == [NAMES["member"]]  # an unknown name concerns no community
    assert steward.get(f"/api/v1/audit?kind=sign_in&actor={NAMES['member']}").json()["events"]
    page = steward.get("/audit?kind=sign_in_refused").text
    assert NAMES["member"] in page and TYPED not in page
    other = login(TestClient(client.app), "steward_b")
    assert not [e for e in other.get("/api/v1/audit").json()["events"] if e["data"].get("person") == NAMES["member"]]
    assert PASSWORD not in str(events)
