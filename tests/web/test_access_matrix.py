"""The access matrix: every role x every route (enumerated from the app) x read/write -> allowed or refused, and no
refusal (nor any list) shows a title, word, count or label of an item the role may not see."""

from __future__ import annotations

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from tests.web.conftest import COLLECTIONS, ROLES, VISIBLE, WORDS, WebWS, csrf, login
from tests.web.matrix import LOGIN, Case
from tests.web.matrix import MATRIX as W1_MATRIX

try:  # the other half of the app (requests, models, withdrawals, audit, use) keeps its rows in its own file
    from tests.web.matrix_w2 import MATRIX as W2_MATRIX
except ImportError:
    W2_MATRIX = {}

FULL = {**W1_MATRIX, **W2_MATRIX}
# The steward of A acts last, so a write that changes the workspace cannot change what the others were judged on.
ORDER = [r for r in ROLES if r != "steward_a"] + ["steward_a"]
READS = sorted(k for k in FULL if k[0] == "GET")
WRITES = sorted(k for k in FULL if k[0] != "GET")


def _walk(routes):
    """Every route, inside included routers too (routers are included without a prefix)."""
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            yield from _walk(inner.routes)
        else:
            yield r


def app_routes(app) -> set[tuple[str, str]]:
    out = set()
    for r in _walk(app.routes):
        if isinstance(r, APIRoute):
            out |= {(m, r.path) for m in r.methods if m != "HEAD"}
        elif getattr(r, "path", None) in ("/api/docs", "/api/openapi.json"):
            out.add(("GET", r.path))
    return out


def hidden_words(role: str) -> list[str]:
    """Everything that would betray an item or collection ROLE may not see: ids, words, label text, names."""
    from tests.web.matrix import coll_visible

    out = []
    for ext, text in WORDS.items():
        if ext not in VISIBLE[role]:
            out += [ext, text]
    if "comm-secret" not in VISIBLE[role]:
        out.append("Tapu")  # comm-secret's label, in the community's words
    out += [name for name, *_ in COLLECTIONS if not coll_visible(role, name)]
    return out


def test_every_route_has_a_row(app):
    """A new route without an entry in the matrix fails here."""
    missing = app_routes(app) - set(FULL)
    assert not missing, f"routes without access-matrix rows: {sorted(missing)}"
    gone = set(W1_MATRIX) - app_routes(app)
    assert not gone, f"matrix rows for routes that no longer exist: {sorted(gone)}"


def _clients(app) -> dict[str, TestClient]:
    out = {}
    for role in ORDER:
        c = TestClient(app, raise_server_exceptions=False)
        out[role] = login(c, role)
    return out


def _send(client: TestClient, method: str, case: Case, ws: WebWS):
    url = case.url(ws)
    if method == "GET":
        return client.get(url, follow_redirects=False)
    token = csrf(client)
    if url.startswith("/api/"):
        kw = {"json": case.json(ws)} if case.json else {"data": case.form(ws) if case.form else {}}
        return client.request(method, url, headers={"X-CSRF-Token": token}, follow_redirects=False, **kw)
    data = {**(case.form(ws) if case.form else {}), "csrf_token": token}
    return client.request(method, url, data=data, follow_redirects=False)


def _check(role: str, key, case: Case, ws: WebWS, resp) -> None:
    want = case.expect(role)
    url = case.url(ws)
    where = f"{role} {key[0]} {url}"
    if want == LOGIN:
        if url.startswith("/api/"):
            assert resp.status_code == 401, f"{where}: {resp.status_code} {resp.text[:200]}"
        else:
            assert resp.status_code == 303 and resp.headers["location"].startswith("/login"), \
                f"{where}: {resp.status_code} {resp.headers.get('location')}"
    else:
        assert resp.status_code == want, f"{where}: expected {want}, got {resp.status_code} {resp.text[:300]}"
    if resp.status_code == 303 and want != LOGIN:
        assert not resp.headers["location"].startswith("/login"), where
    body = resp.text if "audio" not in resp.headers.get("content-type", "") else ""
    leaked = [w for w in hidden_words(role) if w in body]
    assert not leaked, f"{where}: the answer shows what {role} may not see: {leaked}"
    assert "Traceback" not in body, where


def test_reads(app, webws):
    """Every GET row, for every role, over one workspace (reads change nothing that another read depends on)."""
    clients = _clients(app)
    checked = 0
    for key in READS:
        for case in FULL[key]:
            for role in ORDER:
                _check(role, key, case, webws, _send(clients[role], "GET", case, webws))  # asserts inside
                checked += 1
    assert READS and checked >= len(READS) * len(ORDER)  # an empty table would check nothing


@pytest.mark.parametrize("key", WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_writes(app, webws, key):
    """Every state-changing row, for every role, on a fresh workspace."""
    clients = _clients(app)
    assert FULL[key], f"{key}: no case to check"
    for case in FULL[key]:
        for role in ORDER:
            _check(role, key, case, webws, _send(clients[role], key[0], case, webws))  # asserts inside


def test_counts_come_from_the_filtered_query(app, webws):
    """The number of items per collection and the search total are what the role may see, never more."""
    clients = _clients(app)
    for role in ORDER:
        c = clients[role]
        listed = {x["name"]: x["items"] for x in c.get("/api/v1/collections").json()["collections"]}
        for name, _comm, _lvl, items in COLLECTIONS:
            if name in listed:
                assert listed[name] == sum(1 for e, *_ in items if e in VISIBLE[role]), (role, name)
        found = c.get("/api/v1/search", params={"q": "words"}).json()
        expect = {e for e in VISIBLE[role] if "words" in WORDS[e]}
        assert found["page"]["total"] == len(expect), role
        assert {x["external_id"] for x in found["items"]} == expect, role
