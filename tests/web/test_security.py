"""Security of the web layer: CSRF, cookies, lockout, path tricks, escaping, IDOR, token scopes, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from hearthkit.catalog.models import Account, AuditEvent, Consent, ItemProtocol, Label, Person
from hearthkit.governance import identity
from hearthkit.web.app import create_app
from tests.web.conftest import NAMES, PASSWORD, SECRET, csrf, login


def _labels(webws) -> int:
    cat = webws.catalog()
    try:
        with cat.session() as s:
            return s.scalar(select(func.count()).select_from(Label))
    finally:
        cat.close()


def _events(webws) -> int:
    cat = webws.catalog()
    try:
        with cat.session() as s:
            return s.scalar(select(func.count()).select_from(AuditEvent))
    finally:
        cat.close()


def test_missing_or_forged_csrf_is_refused_and_changes_nothing(client, webws):
    login(client, "steward_a")
    url = f"/items/{webws.items['comm-1']}/labels"
    before = _labels(webws)
    for data in ({"key": "tk:verified"}, {"key": "tk:verified", "csrf_token": "0" * 64},
                 {"key": "tk:verified", "csrf_token": ""}):
        r = client.post(url, data=data, follow_redirects=False)
        assert r.status_code == 403 and "form expired" in r.text
    # The API with the session cookie needs the header; a token from another browser does not count.
    other = login(TestClient(client.app), "steward_b")
    r = client.post("/api/v1" + url, data={"key": "tk:verified"}, headers={"X-CSRF-Token": csrf(other)})
    assert r.status_code == 403
    r = client.post("/api/v1" + url, data={"key": "tk:verified"})
    assert r.status_code == 403
    assert _labels(webws) == before
    ok = client.post(url, data={"key": "tk:verified", "csrf_token": csrf(client)}, follow_redirects=False)
    assert ok.status_code == 303 and _labels(webws) == before + 1


def test_login_form_needs_csrf_too(client):
    r = client.post("/login", data={"name": NAMES["member"], "password": PASSWORD}, follow_redirects=False)
    assert r.status_code == 403


def _session_cookie_header(resp) -> str:
    return next(h for h in resp.headers.get_list("set-cookie") if h.startswith("hk_session="))


def test_session_cookie_flags_plain_tls_and_proxy(webws):
    form = {"name": NAMES["member"], "password": PASSWORD}
    app = create_app(webws.ws, secret=SECRET)
    plain = TestClient(app)
    r = plain.post("/login", data={**form, "csrf_token": csrf(plain)}, follow_redirects=False)
    h = _session_cookie_header(r).lower()
    assert "httponly" in h and "samesite=lax" in h and "secure" not in h

    tls = TestClient(app, base_url="https://testserver")
    r = tls.post("/login", data={**form, "csrf_token": csrf(tls)}, follow_redirects=False)
    assert "secure" in _session_cookie_header(r).lower()

    # A forwarded https counts only when the operator said a proxy is in front (--behind-proxy).
    fwd = {"X-Forwarded-Proto": "https"}
    c = TestClient(app, headers=fwd)
    r = c.post("/login", data={**form, "csrf_token": csrf(c)}, follow_redirects=False)
    assert "secure" not in _session_cookie_header(r).lower()
    proxied = TestClient(create_app(webws.ws, secret=SECRET, behind_proxy=True), headers=fwd)
    token = csrf(proxied)
    # The pre-session cookie came back Secure, which httpx keeps for https; the browser behind the proxy is on https.
    pre = next(c for c in proxied.cookies.jar if c.name == "hk_pre")
    assert pre.secure
    pre.secure = False
    r = proxied.post("/login", data={**form, "csrf_token": token}, follow_redirects=False)
    assert "secure" in _session_cookie_header(r).lower()


def test_lockout_after_repeated_failures_same_answer_for_unknown_names(client, webws):
    token = csrf(client)

    def attempt(name, password):
        return client.post("/login", data={"name": name, "password": password, "csrf_token": token},
                           follow_redirects=False)

    unknown = attempt("no-such-person", "whatever")
    for _ in range(identity.FREE_FAILURES):
        wrong = attempt(NAMES["member"], "not the password")
        assert wrong.status_code == 401
    assert wrong.text == unknown.text.replace("no-such-person", NAMES["member"])  # no user enumeration
    locked = attempt(NAMES["member"], PASSWORD)  # the right password, but locked
    assert locked.status_code == 401 and locked.text == wrong.text
    cat = webws.catalog()
    with cat.session() as s:
        acc = s.scalar(select(Account).join(Person, Person.id == Account.person_id)
                       .where(Person.name == NAMES["member"]))
        until = acc.locked_until if acc.locked_until.tzinfo else acc.locked_until.replace(tzinfo=UTC)
        assert until > datetime.now(UTC) and acc.failed_logins == identity.FREE_FAILURES
        acc.locked_until = datetime.now(UTC) - timedelta(seconds=1)  # the back-off has passed
    cat.close()
    assert attempt(NAMES["member"], PASSWORD).status_code == 303


def test_lock_grows_with_each_further_failure():
    assert identity._lock_for(identity.FREE_FAILURES) < identity._lock_for(identity.FREE_FAILURES + 3)
    assert identity._lock_for(1000) == timedelta(days=1)


def test_sign_out_and_password_change_end_sessions(client, webws):
    login(client, "member")
    cookie = client.cookies.get("hk_session")
    assert client.get("/api/v1/me").json()["name"] == NAMES["member"]
    client.post("/logout", data={"csrf_token": csrf(client)})
    stale = TestClient(client.app, cookies={"hk_session": cookie})
    assert stale.get("/api/v1/me").json()["name"] is None

    login(client, "member")
    old = client.cookies.get("hk_session")
    r = client.post("/password", data={"old": PASSWORD, "new": "a brand new secret", "again": "a brand new secret",
                                       "csrf_token": csrf(client)})
    assert r.status_code == 200
    assert TestClient(client.app, cookies={"hk_session": old}).get("/api/v1/me").json()["name"] is None


def test_forged_session_cookie_is_anonymous(client, webws):
    login(client, "steward_a")
    good = client.cookies.get("hk_session")
    forged = good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB")
    c = TestClient(client.app, cookies={"hk_session": forged})
    assert c.get("/api/v1/me").json()["name"] is None
    assert c.get(f"/api/v1/items/{webws.items['comm-secret']}").status_code == 404


def test_one_time_password_forces_a_new_one(client, webws):
    cat = webws.catalog()
    otp = identity.reset_password(cat, NAMES["researcher"])
    cat.close()
    r = client.post("/login", data={"name": NAMES["researcher"], "password": otp, "csrf_token": csrf(client)},
                    follow_redirects=False)
    assert r.headers["location"] == "/password"
    assert client.get("/collections", follow_redirects=False).headers["location"] == "/password"
    assert client.get("/api/v1/collections").status_code == 403
    r = client.post("/password", data={"old": otp, "new": "my own password", "again": "my own password",
                                       "csrf_token": csrf(client)})
    assert r.status_code == 200
    r = client.post("/login", data={"name": NAMES["researcher"], "password": "my own password",
                                    "csrf_token": csrf(client)}, follow_redirects=False)
    assert r.headers["location"] == "/"
    assert client.get("/collections").status_code == 200


def test_no_open_redirect_after_sign_in(client):
    for target in ("//evil.example/x", "https://evil.example", "/\\evil.example"):
        r = client.post("/login", data={"name": NAMES["member"], "password": PASSWORD, "next": target,
                                        "csrf_token": csrf(client)}, follow_redirects=False)
        assert r.headers["location"] == "/", target


def test_path_tricks_are_plain_not_found(client, webws):
    login(client, "steward_a")
    for path in ("/items/..%2F..%2Fhearth.yaml", "/items/1%00", "/items/-1", "/items/99999999999999999999999",
                 "/items/1.5", "/collections/a-comm", "/api/v1/items/%2e%2e", "/static/../hearth.yaml",
                 "/static/%2e%2e/%2e%2e/hearth.yaml", "/items/1/audio/../../../etc/passwd",
                 "/api/v1/items/1e3"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.status_code)
        assert "Traceback" not in r.text and "owner:" not in r.text


def test_label_text_with_markup_is_escaped(client, webws):
    login(client, "steward_a")
    page = client.get(f"/items/{webws.items['comm-secret']}").text
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; Tapu" in page
    # A steward's own wording goes through the same escaping.
    client.post(f"/items/{webws.items['comm-1']}/labels", data={
        "key": "tk:verified", "text": '"><img src=x onerror=alert(2)>', "csrf_token": csrf(client)})
    page = client.get(f"/items/{webws.items['comm-1']}").text
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(2)&gt;" in page


def test_steward_of_b_cannot_act_on_a_by_editing_ids(client, webws):
    login(client, "steward_b")
    token = csrf(client)
    before_labels, before_events = _labels(webws), _events(webws)
    tries = [
        (f"/items/{webws.items['open-1']}/labels", {"key": "tk:verified"}, 403),  # visible, not theirs
        (f"/items/{webws.items['comm-secret']}/labels", {"key": "tk:verified"}, 404),  # not even visible
        (f"/items/{webws.items['comm-1']}/labels/{webws.label_id}/remove", {}, 404),
        (f"/items/{webws.items['b-1']}/labels/{webws.label_id}/remove", {}, 404),  # A's label via B's item
        (f"/items/{webws.items['comm-1']}/protocol", {"protocol": "A-women"}, 404),
        (f"/items/{webws.items['open-1']}/withdraw", {"reason": "x"}, 403),
        (f"/collections/{webws.collections['a-comm']}/consent", {"scope": "collective", "subject": "A",
                                                                   "given_by": "x", "given_at": "2026-01-01",
                                                                   "purposes": "research"}, 404),
        (f"/collections/{webws.collections['a-open']}/consent", {"scope": "collective", "subject": "A",
                                                                   "given_by": "x", "given_at": "2026-01-01",
                                                                   "purposes": "research"}, 403),
    ]
    for url, data, status in tries:
        r = client.post(url, data={**data, "csrf_token": token}, follow_redirects=False)
        assert r.status_code == status, (url, r.status_code, r.text[:200])
        assert "secret words" not in r.text and "Tapu" not in r.text
    assert _labels(webws) == before_labels and _events(webws) == before_events
    # Their own community's item works.
    r = client.post(f"/items/{webws.items['b-1']}/labels", data={"key": "tk:verified", "csrf_token": token},
                    follow_redirects=False)
    assert r.status_code == 303 and _labels(webws) == before_labels + 1


def _token(webws, role: str, scopes: list[str], days: int | None = 30) -> tuple[int, str]:
    cat = webws.catalog()
    try:
        return identity.create_token(cat, NAMES[role], "t", scopes, days)
    finally:
        cat.close()


def test_api_token_scopes_revocation_and_expiry(app, webws):
    c = TestClient(app)
    tid, read = _token(webws, "steward_a", ["read"])
    _, transcribe = _token(webws, "steward_a", ["transcribe"])
    _, admin = _token(webws, "steward_a", ["read", "admin"])
    secret_item = f"/api/v1/items/{webws.items['comm-secret']}"

    def get(tok, url=secret_item):
        return c.get(url, headers={"Authorization": f"Bearer {tok}"})

    assert get(read).status_code == 200
    assert get(transcribe).status_code == 403  # beyond its scope
    assert "secret words" not in get(transcribe).text
    label_url = f"/api/v1/items/{webws.items['comm-1']}/labels"
    r = c.post(label_url, data={"key": "tk:verified"}, headers={"Authorization": f"Bearer {read}"})
    assert r.status_code == 403  # a read token cannot change the catalog
    r = c.post(label_url, data={"key": "tk:verified"}, headers={"Authorization": f"Bearer {admin}"})
    assert r.status_code == 200 and "label" in r.json()  # a bearer token needs no CSRF token
    # A token cannot mint tokens (it could widen its own scopes).
    assert c.post("/api/v1/tokens", json={"scopes": ["admin"]},
                  headers={"Authorization": f"Bearer {admin}"}).status_code == 403
    cat = webws.catalog()
    identity.revoke_token(cat, tid)
    cat.close()
    assert get(read).status_code == 401
    assert get("hk_not-a-token").status_code == 401
    assert c.get(secret_item, headers={"Authorization": "Basic abc"}).status_code == 401
    _, old = _token(webws, "steward_a", ["read"], days=1)
    cat = webws.catalog()
    with cat.session() as s:
        from hearthkit.catalog.models import ApiToken

        s.execute(update(ApiToken).where(ApiToken.token_hash == identity.token_hash(old))
                  .values(expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    cat.close()
    assert get(old).status_code == 401


def test_tokens_are_stored_hashed_and_shown_once(client, webws):
    login(client, "member")
    r = client.post("/tokens", data={"name": "script", "scope": ["read", "transcribe"], "days": "7",
                                     "csrf_token": csrf(client)})
    assert r.status_code == 200
    import re

    raw = re.search(r'class="secret">(hk_[^<]+)<', r.text).group(1)
    assert raw not in client.get("/tokens").text  # shown once
    cat = webws.catalog()
    with cat.session() as s:
        from hearthkit.catalog.models import ApiToken

        stored = [t.token_hash for t in s.scalars(select(ApiToken))]
    cat.close()
    assert identity.token_hash(raw) in stored and raw not in stored
    bad = client.post("/tokens", data={"name": "x", "scope": "everything", "csrf_token": csrf(client)})
    assert bad.status_code == 400 and "not one of" in bad.text


def test_bad_input_gets_a_clear_message_and_changes_nothing(client, webws):
    login(client, "steward_a")
    token = csrf(client)
    item = webws.items["comm-1"]
    before_labels, before_events = _labels(webws), _events(webws)
    r = client.post(f"/items/{item}/labels", data={"csrf_token": token})  # no key
    assert r.status_code == 400 and "key" in r.text and "Traceback" not in r.text
    r = client.post(f"/items/{item}/labels", data={"key": "tk:made_up", "csrf_token": token})
    assert r.status_code == 400 and "unknown label" in r.text
    r = client.post(f"/items/{item}/labels", data={"key": "tk:seasonal", "season": "13-40..99-99",
                                                  "csrf_token": token})
    assert r.status_code == 400 and "--season" in r.text or "season" in r.text
    r = client.post(f"/api/v1/items/{item}/protocol", data={"protocol": "no-such-protocol"},
                    headers={"X-CSRF-Token": token})
    assert r.status_code == 400 and r.json()["error"].startswith("protocol")
    r = client.post(f"/collections/{webws.collections['a-comm']}/consent", data={
        "scope": "collective", "subject": "A", "given_by": "council", "given_at": "yesterday",
        "purposes": "research", "csrf_token": token})
    assert r.status_code == 400 and "given_at" in r.text
    r = client.post(f"/collections/{webws.collections['a-comm']}/consent", data={
        "scope": "collective", "subject": "A", "given_by": "council", "given_at": "2026-01-01",
        "purposes": "selling", "csrf_token": token})
    assert r.status_code == 400 and "purpose" in r.text
    r = client.post("/items/987654/labels", data={"key": "tk:verified", "csrf_token": token})
    assert r.status_code == 404
    assert _labels(webws) == before_labels and _events(webws) == before_events
    cat = webws.catalog()
    with cat.session() as s:
        assert s.scalar(select(func.count()).select_from(Consent)) == 0
        assert s.scalar(select(func.count()).select_from(ItemProtocol)) == 2
    cat.close()


def test_a_crash_shows_no_traceback(app):
    def boom():
        raise RuntimeError("internal detail /secret/path")

    app.add_api_route("/api/v1/boom", boom)
    app.add_api_route("/boom", boom)
    c = TestClient(app, raise_server_exceptions=False)
    for path in ("/boom", "/api/v1/boom"):
        r = c.get(path)
        assert r.status_code == 500
        assert "Traceback" not in r.text and "/secret/path" not in r.text and "nothing was changed" in r.text


def test_audio_is_decrypted_in_memory_with_ranges(client, webws):
    login(client, "steward_a")
    url = f"/items/{webws.items['comm-secret']}/audio"
    want = webws.audio["comm-secret"]
    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == want
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == want[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(want)}"
    assert client.get(url, headers={"Range": "bytes=-4"}).content == want[-4:]
    assert client.get(url, headers={"Range": f"bytes={len(want) + 5}-"}).status_code == 416
    # The store holds it sealed: no file under the workspace contains the recording in the clear.
    for f in webws.root.rglob("*"):
        if f.is_file():
            assert want[44:200] not in f.read_bytes(), f


def test_sealed_transcript_is_shown_decrypted_only_to_who_may_see_it(app, webws):
    """A sealed collection keeps an item's words in the store (store/text.py); the page decrypts them in memory."""
    from hearthkit.catalog.models import Item
    from hearthkit.store.text import pack
    from hearthkit.store.vault import workspace_store

    cat = webws.catalog()
    with cat.session() as s:
        it = s.get(Item, webws.items["comm-prot"])
        blob, rest = pack(it.external_id, "sealed kōrero words", it.meta or {})
        digest = workspace_store(webws.ws).put(blob, seal_for=("a-comm", "A"))
        it.text, it.meta = None, {**rest, "sealed_text": digest}
    cat.close()
    inside = login(TestClient(app), "protocol")
    assert inside.get(f"/api/v1/items/{webws.items['comm-prot']}").json()["text"] == "sealed kōrero words"
    assert "sealed kōrero words" in inside.get(f"/items/{webws.items['comm-prot']}").text
    outside = login(TestClient(app), "member")
    r = outside.get(f"/items/{webws.items['comm-prot']}")
    assert r.status_code == 404 and "sealed kōrero" not in r.text
    for f in webws.root.rglob("*"):
        if f.is_file():
            assert "sealed kōrero words".encode() not in f.read_bytes(), f
