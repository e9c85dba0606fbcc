"""The FastAPI application: catalog, static files, error handlers, middleware and the route modules."""

from __future__ import annotations

import importlib
import os
import secrets
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from hearthkit.errors import HearthError
from hearthkit.workspace import Workspace

# Route modules under hearthkit.web.routes, included in this order.
ROUTER_MODULES: tuple[str, ...] = ("auth", "home", "browse", "requests", "models", "withdrawals", "audit", "use",
                                   "spoken")
# Modules that may not exist yet (another part of the app still being built); any other missing module is an error.
OPTIONAL_ROUTERS: frozenset[str] = frozenset({"requests", "models", "withdrawals", "audit", "use"})
SECRET_NAME = "web-secret"
STATIC = Path(__file__).parent / "static"
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; "
                               "style-src 'self'; script-src 'self'; frame-ancestors 'none'",
}


def load_secret(ws: Workspace, secret_file: Path | None = None) -> bytes:
    """The key that signs cookies: SECRET_FILE, else web-secret in the key folder (0600, made on first start)."""
    path = Path(secret_file) if secret_file else ws.keys_dir / SECRET_NAME
    if secret_file is None and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    try:
        raw = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise HearthError(f"{path}: cannot read the web secret ({exc.strerror}); pass --secret-file FILE") from None
    if len(raw) < 32:
        raise HearthError(f"{path}: the web secret is too short; it needs at least 32 characters")
    root = ws.root.resolve()
    if path.resolve() == root or root in path.resolve().parents:
        raise HearthError(f"{path}: the web secret must not lie inside the workspace {root}; keep it with the keys")
    return raw.encode("utf-8")


def create_app(ws: Workspace, *, secret: bytes | None = None, behind_proxy: bool = False) -> FastAPI:
    """The web app over workspace WS; SECRET signs cookies (default: the key folder's web-secret)."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.web import deps, errors, i18n

    catalog = open_workspace_catalog(ws)  # bound: the audit log's head anchor is kept in the key folder

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        catalog.close()

    # /api/docs is our own page (routes/home.py): Swagger UI would make every browser fetch scripts from a CDN.
    app = FastAPI(title="hearthkit", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json",
                  swagger_ui_oauth2_redirect_url=None, lifespan=lifespan)
    app.state.ws = ws
    app.state.catalog = catalog
    app.state.secret = secret or load_secret(ws)
    app.state.behind_proxy = behind_proxy
    app.state.ws_owner = ws.owner
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    errors.install(app)

    @app.middleware("http")
    async def cookies_and_headers(request: Request, call_next):
        response = await call_next(request)
        new_pre = getattr(request.state, "new_pre", None)
        if new_pre and not request.cookies.get(deps.PRE_COOKIE):
            deps.set_cookie(request, response, deps.PRE_COOKIE, new_pre)
        lang = request.query_params.get("lang")
        if lang in i18n.LOCALES and request.cookies.get(i18n.COOKIE) != lang:
            deps.set_cookie(request, response, i18n.COOKIE, lang, max_age=365 * 86400)
        for k, v in _SECURITY_HEADERS.items():
            if k not in response.headers:
                response.headers[k] = v
        if request.url.path.startswith("/api/") or "text/html" in response.headers.get("content-type", ""):
            response.headers.setdefault("Cache-Control", "no-store")  # pages may show restricted data
        return response

    for name in ROUTER_MODULES:
        try:
            module = importlib.import_module(f"hearthkit.web.routes.{name}")
        except ModuleNotFoundError as exc:
            if name in OPTIONAL_ROUTERS and exc.name == f"hearthkit.web.routes.{name}":
                continue
            raise
        app.include_router(module.router)

    return app


def factory() -> FastAPI:
    """The app for `uvicorn --factory` (several workers): the workspace and settings come from the environment."""
    from hearthkit.workspace import find_workspace

    ws = find_workspace(Path(os.environ["HEARTH_WORKSPACE"]) if os.environ.get("HEARTH_WORKSPACE") else None)
    secret_file = os.environ.get("HEARTH_WEB_SECRET_FILE")
    return create_app(ws, secret=load_secret(ws, Path(secret_file) if secret_file else None),
                      behind_proxy=os.environ.get("HEARTH_BEHIND_PROXY") == "1")
