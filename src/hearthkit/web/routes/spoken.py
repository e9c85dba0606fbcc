"""Spoken-term search in the browser: the library's search (governance/search.py) for the signed-in person."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request

from hearthkit.errors import HearthError
from hearthkit.governance.search import spoken_indexes, spoken_search
from hearthkit.web.deps import Actor, require_scope, respond, viewer

router = APIRouter()
_NAME = re.compile(r"^[\w][\w.-]{0,199}$")  # an index name, never a path: the web searches only WORKSPACE/indexes
LIMIT = 20


def spoken(request: Request, who: Actor) -> tuple[dict, int]:
    """The indexes WHO may search and, with ?index=&q=, the hits of the term in the items they may access."""
    ws, catalog = request.app.state.ws, request.app.state.catalog
    q = (request.query_params.get("q") or "").strip()[:200]
    index = (request.query_params.get("index") or "").strip()
    names = spoken_indexes(ws, catalog, viewer(who))
    doc = {"indexes": names, "index": index if index in names else (names[0] if names else None), "q": q,
           "hits": None, "error": None}
    if not (q and index):
        return doc, 200
    if index not in names or not _NAME.match(index):
        # The same answer for an index that does not exist and one with nothing this person may access.
        doc.update(error=f"no spoken-term index {index[:60]!r} that you may search", hits=[])
        return doc, 404
    try:
        doc["hits"] = spoken_search(ws, catalog, index, q, viewer(who), who.name, limit=LIMIT, via="web")
    except HearthError as exc:  # a term the model cannot spell, an unusable index: one line
        doc.update(error=str(exc), hits=[])
        return doc, 400
    return doc, 200


@router.get("/spoken", include_in_schema=False)
def spoken_page(request: Request, who: Actor = Depends(require_scope("read"))):
    doc, status = spoken(request, who)
    return respond(request, "spoken.html", doc, status=status)


@router.get("/api/v1/spoken")
def spoken_api(request: Request, who: Actor = Depends(require_scope("read"))):
    """Spoken-term search: ?index=NAME&q=TERM; hits only in items the caller may access (no counts of others)."""
    doc, status = spoken(request, who)
    return respond(request, "spoken.html", doc, status=status)
