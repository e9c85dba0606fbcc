"""Error pages: one clear message, HTML for pages and JSON for /api/, never a traceback."""

from __future__ import annotations

import logging
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearthkit.errors import HearthError

log = logging.getLogger("hearthkit.web")


class NeedsSignIn(Exception):
    """Raised by `signed_in`: pages redirect to /login, the API answers 401."""


class MustChangePassword(Exception):
    """A one-time password is still in use: pages go to /password first, the API answers 403."""


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def error_response(request: Request, status: int, message: str) -> Response:
    """MESSAGE with STATUS, as JSON for the API and as the error page for browsers."""
    if is_api(request) or request.headers.get("accept", "").startswith("application/json"):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    from hearthkit.web.deps import render

    try:
        return render(request, "error.html", {"status": status, "message": message}, status=status)
    except Exception:  # the error page itself failed: plain text, still no traceback
        log.exception("error page failed")
        return Response(message, status_code=status, media_type="text/plain; charset=utf-8")


def _field(loc: tuple) -> str:
    parts = [str(x) for x in loc if x not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or "input"


def install(app: FastAPI) -> None:
    """Register the handlers on APP."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404:
            detail = "not found" if detail == "Not Found" else detail  # Starlette's own, for unknown paths
        elif exc.status_code == 405:
            detail = "this address does not accept that method"
        resp = error_response(request, exc.status_code, detail)
        for k, v in (exc.headers or {}).items():
            resp.headers[k] = v
        return resp

    @app.exception_handler(RequestValidationError)
    async def bad_input(request: Request, exc: RequestValidationError) -> Response:
        errs = exc.errors()
        # A malformed id in the path is "no such thing", never a hint about what exists.
        if any(e.get("loc", ("",))[0] == "path" for e in errs):
            return error_response(request, 404, "not found")
        first = errs[0] if errs else {}
        msg = f"{_field(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid value')}"
        return error_response(request, 400, msg)

    @app.exception_handler(HearthError)
    async def user_error(request: Request, exc: HearthError) -> Response:
        return error_response(request, 400, str(exc))

    @app.exception_handler(NeedsSignIn)
    async def needs_sign_in(request: Request, exc: NeedsSignIn) -> Response:
        if is_api(request):
            return JSONResponse({"error": "sign in or send an API token (Authorization: Bearer …)", "status": 401},
                                status_code=401, headers={"WWW-Authenticate": "Bearer"})
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(MustChangePassword)
    async def must_change(request: Request, exc: MustChangePassword) -> Response:
        if is_api(request):
            return JSONResponse({"error": "choose a new password first (your password is a one-time password)",
                                 "status": 403}, status_code=403)
        return RedirectResponse("/password", status_code=303)

    @app.exception_handler(Exception)
    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "something went wrong on the server; nothing was changed. "
                                            "Tell the workspace owner what you were doing.")
