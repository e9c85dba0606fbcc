"""What every route needs: the actor asking, sign-in, CSRF, API scopes, and rendering in the request's language."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import jinja2
from fastapi import HTTPException, Request
from fastapi import Path as PathParam
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeSerializer

from hearthkit.governance import identity
from hearthkit.web import i18n
from hearthkit.web.errors import MustChangePassword, NeedsSignIn

SESSION_COOKIE = "hk_session"
PRE_COOKIE = "hk_pre"  # random id of a browser before sign-in: the CSRF seed of the login form
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
# Pages a person holding a one-time password may still reach.
# A catalog id in a path: anything else (negative, huge, not a number) is a plain 404, never a database error.
Id = Annotated[int, PathParam(ge=1, le=2**62)]
_BEFORE_NEW_PASSWORD = {"/password", "/logout", "/login", "/api/v1/me"}

templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")), autoescape=True,
    extensions=["jinja2.ext.i18n"]))
templates.env.install_null_translations(newstyle=False)  # per-request gettext comes in the context (render)


@dataclass
class Actor:
    """Who is asking: a signed-in person (session or API token) or anonymous."""

    name: str | None = None  # None: anonymous
    person_id: int | None = None
    roles: dict[str, set[str]] = field(default_factory=dict)  # community -> roles
    protocols: set[str] = field(default_factory=set)
    is_owner: bool = False  # the account is named as the workspace owner; grants nothing by itself (see docs/web.md)
    scopes: frozenset[str] | None = None  # None: a browser session, every scope
    via: Literal["session", "token", "anonymous"] = "anonymous"
    must_change: bool = False

    @property
    def signed_in(self) -> bool:
        return self.name is not None

    def stewards(self) -> set[str]:
        """Communities this actor is a steward of."""
        return {c for c, r in self.roles.items() if "steward" in r}

    def communities(self) -> set[str]:
        """Communities this actor holds any role in."""
        return {c for c, r in self.roles.items() if r}

    def allows(self, scope: str) -> bool:
        """Whether the credential used allows SCOPE (an API token's allowlist; a session allows all)."""
        return self.scopes is None or scope in self.scopes


def _serializer(request: Request) -> URLSafeSerializer:
    return URLSafeSerializer(request.app.state.secret, salt="hearthkit-session")


def sign_session(request: Request, raw: str) -> str:
    """The cookie value of session RAW: signed, so a forged cookie never reaches the database."""
    return _serializer(request).dumps(raw)


def session_raw(request: Request) -> str | None:
    """The raw session id from a correctly signed session cookie, or None."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        raw = _serializer(request).loads(cookie)
    except BadSignature:
        return None
    return raw if isinstance(raw, str) else None


def _load(request: Request) -> Actor:
    cat = request.app.state.catalog
    auth = request.headers.get("authorization", "")
    person_id, scopes, via, must_change = None, None, "anonymous", False
    if auth:
        kind, _, raw = auth.partition(" ")
        found = identity.token_person(cat, raw.strip()) if kind.lower() == "bearer" and raw.strip() else None
        if found is None:  # a credential that does not hold is refused, never read as anonymous
            raise HTTPException(401, "the API token is unknown, expired or revoked", {"WWW-Authenticate": "Bearer"})
        person_id, scopes = found
        via = "token"
    else:
        raw = session_raw(request)
        if raw:
            person_id = identity.session_person(cat, raw)
            if person_id is not None:
                via = "session"
                must_change = identity.session_must_change(cat, person_id)
    if person_id is None:
        return Actor()
    who = identity.identity(cat, person_id)
    if who is None:
        return Actor()
    return Actor(name=who.name, person_id=who.person_id, roles={c: set(r) for c, r in who.roles.items()},
                 protocols=set(who.protocols), is_owner=who.name == request.app.state.ws_owner, scopes=scopes,
                 via=via, must_change=must_change)


def actor(request: Request) -> Actor:
    """The actor of this request (cached on request.state); a bad API token is a 401, a bad cookie anonymous."""
    cached = getattr(request.state, "actor", None)
    if cached is None:
        cached = request.state.actor = _load(request)
    if cached.must_change and request.url.path not in _BEFORE_NEW_PASSWORD:
        raise MustChangePassword()
    return cached


def signed_in(request: Request) -> Actor:
    """The actor, who must be signed in: pages redirect to /login, the API answers 401."""
    a = actor(request)
    if not a.signed_in:
        raise NeedsSignIn()
    return a


def require_scope(scope: str):
    """A dependency: a signed-in actor whose credential allows SCOPE (403 otherwise)."""
    def check(request: Request) -> Actor:
        a = signed_in(request)
        if not a.allows(scope):
            raise HTTPException(403, f"this API token does not allow {scope!r}; create one with that scope")
        return a
    return check


def csrf_seed(request: Request) -> str:
    """What the CSRF token is bound to: the session when signed in, else this browser's pre-session id."""
    raw = session_raw(request)
    if raw:
        return "s:" + raw
    pre = request.cookies.get(PRE_COOKIE) or getattr(request.state, "new_pre", None)
    if not pre:
        pre = request.state.new_pre = secrets.token_urlsafe(24)  # set on the response by the app's middleware
    return "p:" + pre


def csrf_token(request: Request) -> str:
    """The CSRF token for forms on this request."""
    return hmac.new(request.app.state.secret, csrf_seed(request).encode(), hashlib.sha256).hexdigest()


async def csrf_checked(request: Request) -> None:
    """Refuse a state-changing request whose CSRF token (form field or X-CSRF-Token header) does not match."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("authorization"):
        actor(request)  # a bearer token is no ambient credential: no CSRF, but it must be valid
        return
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and "form" in request.headers.get("content-type", ""):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if not sent or not hmac.compare_digest(sent, csrf_token(request)):
        raise HTTPException(403, "this form expired or did not come from this site: reload the page and try again")


def wants_json(request: Request) -> bool:
    """True for /api/ paths and for clients that ask for JSON first."""
    return request.url.path.startswith("/api/") or request.headers.get("accept", "").startswith("application/json")


def locale(request: Request) -> str:
    cached = getattr(request.state, "locale", None)
    if cached is None:
        cached = request.state.locale = i18n.pick_locale(request)
    return cached


def gettext_for(request: Request):
    """The gettext function of the request's language."""
    return i18n.translations(locale(request)).gettext


def _with_lang(request: Request, code: str) -> str:
    """This page's address in language CODE (the rest of the query kept, e.g. a search)."""
    from urllib.parse import urlencode

    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"] + [("lang", code)]
    return f"{request.url.path}?{urlencode(query)}"


def render(request: Request, template: str, ctx: dict | None = None, status: int = 200):
    """TEMPLATE rendered in the request's language with `_`, `csrf_token`, `actor` and the languages in context."""
    tr = i18n.translations(locale(request))
    try:
        who = actor(request)
    except Exception:  # rendering an error page for a request whose credential failed
        who = Actor()
    context = {"actor": who, "csrf_token": csrf_token(request), "_": tr.gettext, "gettext": tr.gettext,
               "ngettext": tr.ngettext, "lang": locale(request), "locales": i18n.LOCALES,
               "lang_url": lambda code: _with_lang(request, code), **(ctx or {})}
    return templates.TemplateResponse(request, template, context, status_code=status)


def secure_request(request: Request) -> bool:
    """Whether this request came over TLS: directly, or via a trusted proxy's X-Forwarded-Proto (--behind-proxy)."""
    if request.url.scheme == "https":
        return True
    return bool(request.app.state.behind_proxy) and request.headers.get("x-forwarded-proto", "").lower() == "https"


def client_address(request: Request) -> str | None:
    """Where the request came from, as the audit log records it: the trusted proxy's X-Forwarded-For (its first
    address) with --behind-proxy, else the socket's peer."""
    if request.app.state.behind_proxy:
        forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
        if forwarded:
            return forwarded[:100]
    return request.client.host if request.client else None


def set_cookie(request: Request, response, name: str, value: str, max_age: int | None = None) -> None:
    """Set a cookie the way every hearthkit cookie is set: HttpOnly, SameSite=Lax, Secure over TLS."""
    response.set_cookie(name, value, max_age=max_age, httponly=True, samesite="lax", secure=secure_request(request),
                        path="/")


def reader(scope: str = "read"):
    """A dependency: any actor, anonymous included, but an API token must allow SCOPE."""
    def check(request: Request) -> Actor:
        a = actor(request)
        if not a.allows(scope):
            raise HTTPException(403, f"this API token does not allow {scope!r}; create one with that scope")
        return a
    return check


def viewer(a: Actor):
    """The access rules' view of actor A (governance/access.py)."""
    from hearthkit.governance.access import Viewer

    return Viewer(signed_in=a.signed_in, communities=frozenset(a.communities()), stewards_of=frozenset(a.stewards()),
                  protocols=frozenset(a.protocols), name=a.name)


def respond(request: Request, template: str, data: dict, status: int = 200):
    """DATA as JSON for the API (the page's twin), else TEMPLATE rendered with DATA as `data`."""
    from fastapi.responses import JSONResponse

    if wants_json(request):
        return JSONResponse(data, status_code=status)
    return render(request, template, {"data": data}, status=status)
