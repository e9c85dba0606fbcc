"""The start page: for a steward, what needs their attention in their communities; else where to go."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from hearthkit.governance.overview import steward_overview
from hearthkit.web.deps import Actor, actor, render, require_scope

router = APIRouter()


def _home(request: Request, who: Actor) -> dict:
    mine = sorted(who.stewards())
    data = {"name": who.name, "steward_of": mine, "communities": sorted(who.communities())}
    if mine:
        data.update(steward_overview(request.app.state.catalog, mine))
    return data


@router.get("/", include_in_schema=False)
def home_page(request: Request, who: Annotated[Actor, Depends(actor)]):
    return render(request, "home.html", {"home": _home(request, who) if who.signed_in else None})


@router.get("/api/v1/home")
def api_home(request: Request, who: Annotated[Actor, Depends(require_scope("read"))]) -> dict:
    """The start page's data: for a steward, pending requests, models, audit events and withdrawals of their
    communities."""
    return _home(request, who)


@router.get("/api/docs", include_in_schema=False)
def api_docs(request: Request):
    """The API's endpoints, read from its OpenAPI schema and rendered here (no script, nothing from a CDN)."""
    schema = request.app.openapi()
    endpoints = [{"method": method.upper(), "path": path, "summary": op.get("summary", ""),
                  "description": (op.get("description") or "").split("\n")[0]}
                 for path, ops in sorted(schema.get("paths", {}).items()) for method, op in ops.items()]
    return render(request, "apidocs.html", {"endpoints": endpoints})
