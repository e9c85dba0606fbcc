"""The access matrix of W1's routes: for every (method, path) the cases to try and, per role, what must happen.

An expectation is an HTTP status, or LOGIN: a page redirects to /login and the API answers 401. Writes carry a
valid CSRF token (form field for pages, X-CSRF-Token header for the API) so the matrix tests the role, not CSRF.
Other route modules add their rows in their own file (tests/web/matrix_w2.py: MATRIX of the same shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tests.web.conftest import COLLECTIONS, ROLES, VISIBLE, WebWS

LOGIN = "login"
SIGNED_IN = [r for r in ROLES if r != "anonymous"]


@dataclass(frozen=True)
class Case:
    """One request to try for every role: URL (from the workspace), expected outcome per role, optional body."""

    url: Callable[[WebWS], str]
    expect: Callable[[str], int | str]
    form: Callable[[WebWS], dict] | None = None
    json: Callable[[WebWS], dict] | None = None


def everyone(status: int) -> Callable[[str], int | str]:
    return lambda role: status


def signed(status: int) -> Callable[[str], int | str]:
    """STATUS for a signed-in role, LOGIN for anonymous."""
    return lambda role: LOGIN if role == "anonymous" else status


def only(allowed: dict[str, int | str], other: int | str) -> Callable[[str], int | str]:
    return lambda role: allowed.get(role, other)


def coll_visible(role: str, name: str) -> bool:
    """Ground truth: a collection is visible when its level admits the role or it holds an item they may see."""
    comm, level, items = next((c, lvl, its) for n, c, lvl, its in COLLECTIONS if n == name)
    member = {"A": {"member", "protocol", "researcher", "steward_a"}, "B": {"steward_b"}}[comm]
    steward = {"A": "steward_a", "B": "steward_b"}[comm]
    return (role == steward or level == "open" or (level == "registered" and role != "anonymous")
            or (level == "community" and role in member) or any(i in VISIBLE[role] for i, *_ in items))


def _item_cases(path: str, kind_filter: Callable[[str], bool] = lambda ext: True) -> list[Case]:
    """One case per item: 200 where the role may see it, 404 everywhere else (no hint that it exists)."""
    return [Case(lambda w, ext=ext: path.format(id=w.items[ext]),
                 lambda role, ext=ext: 200 if ext in VISIBLE[role] and kind_filter(ext) else 404)
            for ext in sorted({e for _n, _c, _l, its in COLLECTIONS for e, *_ in its})]


def _is_audio(ext: str) -> bool:
    return any(e == ext and x.get("audio") for _n, _c, _l, its in COLLECTIONS for e, _a, x in its)


def _coll_cases(path: str) -> list[Case]:
    return [Case(lambda w, n=name: path.format(id=w.collections[n]),
                 lambda role, n=name: 200 if coll_visible(role, n) else 404) for name, *_ in COLLECTIONS]


def _steward_write(path: str, form: Callable[[WebWS], dict], success: int) -> list[Case]:
    """A steward action on A's community item comm-1 and on the open item open-1 (visible to every role)."""
    def comm1(role: str) -> int | str:
        if role == "anonymous":
            return LOGIN
        if role == "steward_a":
            return success
        return 403 if "comm-1" in VISIBLE[role] else 404

    def open1(role: str) -> int | str:
        if role == "anonymous":
            return LOGIN
        return success if role == "steward_a" else 403

    return [Case(lambda w: path.format(id=w.items["open-1"], label=w.label_id), open1, form=form),
            Case(lambda w: path.format(id=w.items["comm-1"], label=w.label_id), comm1, form=form)]


def _consent_form(w: WebWS) -> dict:
    return {"scope": "collective", "subject": "A", "given_by": "council", "given_at": "2026-01-02",
            "purposes": ["research"]}


def _consent_cases(path: str, success: int) -> list[Case]:
    def acomm(role: str) -> int | str:
        if role == "anonymous":
            return LOGIN
        if role == "steward_a":
            return success
        return 403 if coll_visible(role, "a-comm") else 404
    return [Case(lambda w: path.format(id=w.collections["a-comm"]), acomm, form=_consent_form)]


def _label_form(w: WebWS) -> dict:
    return {"key": "tk:verified", "text": "Verified by us", "language": "en"}


def _protocol_form(w: WebWS) -> dict:
    return {"protocol": "A-women", "sharing": "any"}


def _withdraw_form(w: WebWS) -> dict:
    return {"reason": "the speaker's family asked"}


def _remove_label_cases(path: str, success: int) -> list[Case]:
    def comm1(role: str) -> int | str:
        if role == "anonymous":
            return LOGIN
        if role == "steward_a":
            return success
        return 403 if "comm-1" in VISIBLE[role] else 404
    return [Case(lambda w: path.format(id=w.items["comm-1"], label=w.label_id), comm1)]


def _search(path: str) -> list[Case]:
    return [Case(lambda w: path + "?q=words", everyone(200)), Case(lambda w: path + "?q=", everyone(200))]


def _spoken(path: str) -> list[Case]:
    """Spoken-term search: signed-in people only; an index that does not exist, or a path, is the same 404."""
    return [Case(lambda w: path, signed(200)), Case(lambda w: path + "?index=nope&q=a", signed(404)),
            Case(lambda w: path + "?index=..%2Fnope&q=a", signed(404))]


MATRIX: dict[tuple[str, str], list[Case]] = {
    ("GET", "/"): [Case(lambda w: "/", everyone(200))],
    ("GET", "/api/v1/home"): [Case(lambda w: "/api/v1/home", signed(200))],
    ("GET", "/login"): [Case(lambda w: "/login", everyone(200))],
    ("POST", "/login"): [Case(lambda w: "/login", everyone(401), form=lambda w: {"name": "nobody", "password": "x"})],
    ("POST", "/logout"): [Case(lambda w: "/logout", everyone(303))],
    ("GET", "/password"): [Case(lambda w: "/password", signed(200))],
    ("POST", "/password"): [Case(lambda w: "/password", signed(400),
                                 form=lambda w: {"old": "wrong password", "new": "abcdefghijkl",
                                                 "again": "abcdefghijkl"})],
    ("GET", "/tokens"): [Case(lambda w: "/tokens", signed(200))],
    ("POST", "/tokens"): [Case(lambda w: "/tokens", signed(200), form=lambda w: {"name": "m", "scope": "read"})],
    ("POST", "/tokens/{token_id}/revoke"): [Case(lambda w: f"/tokens/{w.token_id}/revoke",
                                                 only({"anonymous": LOGIN, "steward_a": 303}, 404))],
    ("GET", "/api/v1/me"): [Case(lambda w: "/api/v1/me", everyone(200))],
    ("GET", "/api/v1/tokens"): [Case(lambda w: "/api/v1/tokens", signed(200))],
    ("POST", "/api/v1/tokens"): [Case(lambda w: "/api/v1/tokens", signed(200),
                                      json=lambda w: {"name": "m", "scopes": ["read"]})],
    ("POST", "/api/v1/tokens/{token_id}/revoke"): [Case(lambda w: f"/api/v1/tokens/{w.token_id}/revoke",
                                                        only({"anonymous": LOGIN, "steward_a": 200}, 404))],
    ("GET", "/collections"): [Case(lambda w: "/collections", everyone(200))],
    ("GET", "/api/v1/collections"): [Case(lambda w: "/api/v1/collections", everyone(200))],
    ("GET", "/collections/{collection_id}"): _coll_cases("/collections/{id}"),
    ("GET", "/api/v1/collections/{collection_id}"): _coll_cases("/api/v1/collections/{id}"),
    ("GET", "/items/{item_id}"): _item_cases("/items/{id}"),
    ("GET", "/api/v1/items/{item_id}"): _item_cases("/api/v1/items/{id}"),
    ("GET", "/items/{item_id}/audio"): _item_cases("/items/{id}/audio", _is_audio),
    ("GET", "/api/v1/items/{item_id}/audio"): _item_cases("/api/v1/items/{id}/audio", _is_audio),
    ("GET", "/search"): _search("/search"),
    ("GET", "/api/v1/search"): _search("/api/v1/search"),
    ("GET", "/spoken"): _spoken("/spoken"),
    ("GET", "/api/v1/spoken"): _spoken("/api/v1/spoken"),
    ("POST", "/items/{item_id}/labels"): _steward_write("/items/{id}/labels", _label_form, 303),
    ("POST", "/api/v1/items/{item_id}/labels"): _steward_write("/api/v1/items/{id}/labels", _label_form, 200),
    ("POST", "/items/{item_id}/labels/{label_id}/remove"): _remove_label_cases("/items/{id}/labels/{label}/remove",
                                                                               303),
    ("POST", "/api/v1/items/{item_id}/labels/{label_id}/remove"): _remove_label_cases(
        "/api/v1/items/{id}/labels/{label}/remove", 200),
    ("POST", "/items/{item_id}/protocol"): _steward_write("/items/{id}/protocol", _protocol_form, 303),
    ("POST", "/api/v1/items/{item_id}/protocol"): _steward_write("/api/v1/items/{id}/protocol", _protocol_form, 200),
    ("POST", "/collections/{collection_id}/consent"): _consent_cases("/collections/{id}/consent", 303),
    ("POST", "/api/v1/collections/{collection_id}/consent"): _consent_cases("/api/v1/collections/{id}/consent", 200),
    ("POST", "/items/{item_id}/withdraw"): _steward_write("/items/{id}/withdraw", _withdraw_form, 303),
    ("POST", "/api/v1/items/{item_id}/withdraw"): _steward_write("/api/v1/items/{id}/withdraw", _withdraw_form, 200),
    ("GET", "/api/docs"): [Case(lambda w: "/api/docs", everyone(200))],
    ("GET", "/api/openapi.json"): [Case(lambda w: "/api/openapi.json", everyone(200))],
}
