"""Sign in and out, change password, API tokens: pages and their /api/v1 twins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from hearthkit.errors import HearthError
from hearthkit.governance import identity
from hearthkit.web.deps import (
    SESSION_COOKIE,
    Actor,
    Id,
    actor,
    client_address,
    csrf_checked,
    gettext_for,
    render,
    session_raw,
    set_cookie,
    sign_session,
    signed_in,
)

router = APIRouter()


def _local(target: str | None) -> str:
    """Only paths of this site are followed after sign-in (no open redirect)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login", include_in_schema=False)
def login_page(request: Request, next: str = "/"):
    return render(request, "login.html", {"next": _local(next), "name": "", "error": None})


@router.post("/login", include_in_schema=False, dependencies=[Depends(csrf_checked)])
def login(request: Request, name: Annotated[str, Form(max_length=200)], password: Annotated[str, Form(max_length=1000)],
          next: Annotated[str, Form(max_length=2000)] = "/"):
    cat = request.app.state.catalog
    try:
        who = identity.authenticate(cat, name, password, client=client_address(request))
    except identity.SignInRefused:
        # One answer for every failure: an unknown name, a wrong password and a locked account look alike.
        _ = gettext_for(request)
        msg = _("Sign-in refused: the name or password is wrong, or the account is locked for a few minutes.")
        return render(request, "login.html", {"next": _local(next), "name": name, "error": msg}, status=401)
    old = session_raw(request)
    if old:
        identity.end_session(cat, old, client=client_address(request))
    raw = identity.start_session(cat, who.person_id)
    target = "/password" if who.must_change else _local(next)
    resp = RedirectResponse(target, status_code=303)
    ttl = int(identity.SESSION_TTL.total_seconds())
    set_cookie(request, resp, SESSION_COOKIE, sign_session(request, raw), max_age=ttl)
    return resp


@router.post("/logout", include_in_schema=False, dependencies=[Depends(csrf_checked)])
def logout(request: Request):
    raw = session_raw(request)
    if raw:
        identity.end_session(request.app.state.catalog, raw, client=client_address(request))
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


@router.get("/password", include_in_schema=False)
def password_page(request: Request, who: Annotated[Actor, Depends(signed_in)]):
    return render(request, "password.html", {"error": None, "done": False})


@router.post("/password", include_in_schema=False, dependencies=[Depends(csrf_checked)])
def change_password(request: Request, who: Annotated[Actor, Depends(signed_in)],
                    old: Annotated[str, Form(max_length=1000)], new: Annotated[str, Form(max_length=1000)],
                    again: Annotated[str, Form(max_length=1000)]):
    _ = gettext_for(request)
    if who.via != "session":
        raise HTTPException(403, "a password is changed in the browser, not with an API token")
    if new != again:
        return render(request, "password.html", {"error": _("The two new passwords differ."), "done": False},
                      status=400)
    try:
        identity.change_password(request.app.state.catalog, who.person_id, old, new)
    except HearthError as exc:
        return render(request, "password.html", {"error": str(exc), "done": False}, status=400)
    resp = render(request, "password.html", {"error": None, "done": True})
    resp.delete_cookie(SESSION_COOKIE, path="/")  # every session ended with the old password
    return resp


def _token_rows(request: Request, who: Actor) -> list[dict]:
    return [{"id": t.id, "name": t.name, "scopes": list(t.scopes),
             "created_at": t.created_at.isoformat(timespec="seconds"),
             "expires_at": t.expires_at.date().isoformat() if t.expires_at else None,
             "revoked_at": t.revoked_at.isoformat(timespec="seconds") if t.revoked_at else None,
             "last_used_at": t.last_used_at.isoformat(timespec="seconds") if t.last_used_at else None}
            for t in identity.tokens(request.app.state.catalog, who.person_id)]


def _session_only(who: Actor) -> None:
    # A token that could mint tokens could widen its own scopes.
    if who.via != "session":
        raise HTTPException(403, "API tokens are managed in the browser (Tokens page), not with an API token")


@router.get("/tokens", include_in_schema=False)
def tokens_page(request: Request, who: Annotated[Actor, Depends(signed_in)]):
    return render(request, "tokens.html", {"tokens": _token_rows(request, who), "scopes": identity.SCOPES,
                                           "new_token": None, "error": None})


@router.post("/tokens", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def create_token_page(request: Request, who: Annotated[Actor, Depends(signed_in)]):
    _session_only(who)
    form = await request.form()
    name = str(form.get("name") or "").strip()[:200]
    scopes = [str(x) for x in form.getlist("scope")]
    new, error, status = None, None, 200
    try:
        days = int(form.get("days") or 90)
        _tid, new = identity.create_token(request.app.state.catalog, who.name, name or "token", scopes, days)
    except ValueError:
        error, status = "days: a whole number of days", 400
    except HearthError as exc:
        error, status = str(exc), 400
    return render(request, "tokens.html", {"tokens": _token_rows(request, who), "scopes": identity.SCOPES,
                                           "new_token": new, "error": error}, status=status)


@router.post("/tokens/{token_id}/revoke", include_in_schema=False, dependencies=[Depends(csrf_checked)])
def revoke_token_page(request: Request, token_id: Id, who: Annotated[Actor, Depends(signed_in)]):
    try:
        identity.revoke_token(request.app.state.catalog, token_id, person_id=who.person_id)
    except HearthError:
        raise HTTPException(404, "not found") from None
    return RedirectResponse("/tokens", status_code=303)


# ---- JSON twins ----

@router.get("/api/v1/me")
def api_me(who: Annotated[Actor, Depends(actor)]) -> dict:
    """Who the request is from: name, roles per community, protocols, token scopes."""
    return {"name": who.name, "roles": {c: sorted(r) for c, r in who.roles.items()},
            "protocols": sorted(who.protocols), "via": who.via,
            "scopes": sorted(who.scopes) if who.scopes is not None else None, "must_change": who.must_change}


@router.get("/api/v1/tokens")
def api_tokens(request: Request, who: Annotated[Actor, Depends(signed_in)]) -> dict:
    """The caller's API tokens (never their values)."""
    return {"tokens": _token_rows(request, who)}


@router.post("/api/v1/tokens", dependencies=[Depends(csrf_checked)])
async def api_create_token(request: Request, who: Annotated[Actor, Depends(signed_in)]) -> dict:
    """Create a token (browser session + X-CSRF-Token only); the value is in this answer and nowhere else."""
    _session_only(who)
    try:
        body = await request.json()
    except ValueError:
        raise HTTPException(400, "send JSON: {\"name\": …, \"scopes\": […], \"days\": 90}") from None
    if not isinstance(body, dict) or not isinstance(body.get("scopes"), list):
        raise HTTPException(400, "scopes: a list such as [\"read\"]")
    try:
        tid, raw = identity.create_token(request.app.state.catalog, who.name, str(body.get("name") or "token")[:200],
                                         [str(s) for s in body["scopes"]], int(body.get("days") or 90))
    except (TypeError, ValueError):
        raise HTTPException(400, "days: a whole number of days") from None
    return {"id": tid, "token": raw}


@router.post("/api/v1/tokens/{token_id}/revoke", dependencies=[Depends(csrf_checked)])
def api_revoke_token(request: Request, token_id: Id, who: Annotated[Actor, Depends(signed_in)]) -> dict:
    """Revoke one of the caller's tokens."""
    try:
        identity.revoke_token(request.app.state.catalog, token_id, person_id=who.person_id)
    except HearthError:
        raise HTTPException(404, "not found") from None
    return {"revoked": token_id}
