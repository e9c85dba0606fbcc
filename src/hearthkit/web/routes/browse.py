"""Collections, items, search and audio, filtered by the browsing access policy (governance/access.py)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from hearthkit.errors import HearthError
from hearthkit.governance import browse, stewardship
from hearthkit.web.deps import Actor, Id, csrf_checked, reader, require_scope, respond, viewer, wants_json
from hearthkit.web.paging import PER_PAGE, Page, page_number

router = APIRouter()
Reader = Annotated[Actor, Depends(reader("read"))]
NOT_FOUND = "not found"


def _page(raw) -> tuple[int, int]:
    n = page_number(raw)
    return n, (n - 1) * PER_PAGE


@router.get("/collections", include_in_schema=False)
@router.get("/api/v1/collections")
def collections(request: Request, who: Reader, page: str | None = None):
    """The collections the caller may see, each with the number of its items they may see."""
    n, off = _page(page)
    rows, total = browse.collections(request.app.state.catalog, viewer(who), off, PER_PAGE)
    return respond(request, "collections.html",
                   {"collections": rows, "page": Page(rows, total, n, PER_PAGE).as_dict()})


@router.get("/collections/{collection_id}", include_in_schema=False)
@router.get("/api/v1/collections/{collection_id}")
def collection(request: Request, collection_id: Id, who: Reader, page: str | None = None):
    """One collection: labels, consent records, and the page of its items the caller may see."""
    n, off = _page(page)
    data = browse.collection(request.app.state.catalog, viewer(who), collection_id, off, PER_PAGE)
    if data is None:
        raise HTTPException(404, NOT_FOUND)
    data["page"] = Page([], data.pop("total"), n, PER_PAGE).as_dict()
    return respond(request, "collection.html", data)


@router.get("/items/{item_id}", include_in_schema=False)
@router.get("/api/v1/items/{item_id}")
def item(request: Request, item_id: Id, who: Reader):
    """One item the caller may see: metadata, labels in the community's words, protocols."""
    data = browse.item(request.app.state.catalog, viewer(who), item_id, store=_store(request))
    if data is None:
        raise HTTPException(404, NOT_FOUND)
    data["label_keys"] = sorted(browse.v.LABELS) if data["steward"] else []
    data["purposes"] = [p.value for p in browse.v.Purpose] if data["steward"] else []
    return respond(request, "item.html", data)


@router.get("/search", include_in_schema=False)
@router.get("/api/v1/search")
def search(request: Request, who: Reader, q: str = "", page: str | None = None):
    """Items the caller may see whose id, speaker, dialect or text contains Q."""
    n, off = _page(page)
    rows, total = browse.search(request.app.state.catalog, viewer(who), q, off, PER_PAGE)
    return respond(request, "search.html", {"q": q[:browse.MAX_QUERY], "items": rows,
                                            "page": Page(rows, total, n, PER_PAGE).as_dict()})


def _range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range, or None for the whole; ValueError if unsatisfiable."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    start_s, _, end_s = header[6:].strip().partition("-")
    if not start_s:  # the last N bytes
        length = int(end_s)
        if length <= 0:
            raise ValueError
        return max(0, size - length), size - 1
    start = int(start_s)
    end = min(int(end_s), size - 1) if end_s else size - 1
    if start >= size or start > end:
        raise ValueError
    return start, end


@router.get("/items/{item_id}/audio", include_in_schema=False)
@router.get("/api/v1/items/{item_id}/audio")
def audio(request: Request, item_id: Id, who: Reader):
    """The recording, decrypted in memory and streamed; 404 unless the caller may access the item."""
    from hearthkit.store.vault import workspace_store

    found = browse.item_for_audio(request.app.state.catalog, viewer(who), item_id)
    if found is None:
        raise HTTPException(404, NOT_FOUND)
    digest, media = found
    try:
        data = workspace_store(request.app.state.ws).get(digest)
    except (HearthError, FileNotFoundError, OSError):
        raise HTTPException(404, "the recording is no longer held in the store") from None
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    media = media if media and media.startswith("audio/") else "application/octet-stream"
    try:
        rng = _range(request.headers.get("range"), len(data))
    except ValueError:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{len(data)}"})
    if rng is None:
        return Response(data, media_type=media, headers=headers)
    start, end = rng
    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    return Response(data[start:end + 1], status_code=206, media_type=media, headers=headers)


# ---- steward actions: the same library calls as the CLI, by the signed-in steward ----

def _stewarded_item(request: Request, who: Actor, item_id: Id) -> dict:
    """The item, when WHO is a steward of its community; 404 when they may not see it, 403 when not its steward."""
    data = browse.item(request.app.state.catalog, viewer(who), item_id)
    if data is None:
        raise HTTPException(404, NOT_FOUND)
    if not data["steward"]:
        raise HTTPException(403, f"only a steward of {data['collection']['community']} may do this")
    return data


def _done(request: Request, where: str, result: dict):
    if wants_json(request):
        return result
    return RedirectResponse(where, status_code=303)


def _store(request: Request):
    """The workspace's store: a protocol label or placement seals the collection at once (issue 19, class 6)."""
    from hearthkit.store.vault import workspace_store

    return workspace_store(request.app.state.ws)


Steward = Annotated[Actor, Depends(require_scope("admin"))]


@router.post("/items/{item_id}/labels", include_in_schema=False, dependencies=[Depends(csrf_checked)])
@router.post("/api/v1/items/{item_id}/labels", dependencies=[Depends(csrf_checked)])
def apply_label(request: Request, item_id: Id, who: Steward, key: Annotated[str, Form(max_length=100)],
                text: Annotated[str | None, Form(max_length=2000)] = None,
                language: Annotated[str | None, Form(max_length=35)] = None,
                protocol: Annotated[str | None, Form(max_length=200)] = None,
                season: Annotated[str | None, Form(max_length=20)] = None):
    """Apply a label to the item (a steward of its community)."""
    it = _stewarded_item(request, who, item_id)
    lid = stewardship.apply_label(request.app.state.catalog, key.strip(), it["collection"]["name"], by=who.name,
                                  item=it["external_id"], text=text or None, language=language or None,
                                  protocol=protocol or None, season=season or None, store=_store(request))
    return _done(request, f"/items/{item_id}", {"label": lid})


@router.post("/items/{item_id}/labels/{label_id}/remove", include_in_schema=False,
             dependencies=[Depends(csrf_checked)])
@router.post("/api/v1/items/{item_id}/labels/{label_id}/remove", dependencies=[Depends(csrf_checked)])
def remove_label(request: Request, item_id: Id, label_id: Id, who: Steward):
    """Remove one of the item's own labels (a steward of its community)."""
    it = _stewarded_item(request, who, item_id)
    if label_id not in {lab["id"] for lab in it["labels"] if lab["on"] == "item"}:
        raise HTTPException(404, NOT_FOUND)
    key = stewardship.remove_label(request.app.state.catalog, label_id, by=who.name)
    return _done(request, f"/items/{item_id}", {"removed": key})


@router.post("/items/{item_id}/protocol", include_in_schema=False, dependencies=[Depends(csrf_checked)])
@router.post("/api/v1/items/{item_id}/protocol", dependencies=[Depends(csrf_checked)])
def place_under_protocol(request: Request, item_id: Id, who: Steward, protocol: Annotated[str, Form(max_length=200)],
                         sharing: Annotated[str | None, Form(max_length=3)] = None):
    """Place the item under a protocol of its community."""
    it = _stewarded_item(request, who, item_id)
    if protocol not in it["community_protocols"]:
        raise HTTPException(400, f"protocol {protocol!r} is not a protocol of {it['collection']['community']}")
    n = stewardship.assign_protocol(request.app.state.catalog, protocol, it["collection"]["name"],
                                    [it["external_id"]], by=who.name, sharing=sharing or None,
                                    store=_store(request))
    return _done(request, f"/items/{item_id}", {"placed": n, "protocol": protocol})


def _date(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{field}: expected a date YYYY-MM-DD") from None


@router.post("/collections/{collection_id}/consent", include_in_schema=False, dependencies=[Depends(csrf_checked)])
@router.post("/api/v1/collections/{collection_id}/consent", dependencies=[Depends(csrf_checked)])
def record_consent(request: Request, collection_id: Id, who: Steward, scope: Annotated[str, Form(max_length=20)],
                   subject: Annotated[str, Form(max_length=200)], given_by: Annotated[str, Form(max_length=200)],
                   given_at: Annotated[str, Form(max_length=10)], purposes: Annotated[list[str], Form()],
                   expires_at: Annotated[str | None, Form(max_length=10)] = None,
                   evidence: Annotated[str | None, Form(max_length=2000)] = None):
    """Record a collective or individual consent for the collection (a steward of its community)."""
    cat = request.app.state.catalog
    data = browse.collection(cat, viewer(who), collection_id, 0, 1)
    if data is None:
        raise HTTPException(404, NOT_FOUND)
    if not data["steward"]:
        raise HTTPException(403, f"only a steward of {data['community']} may do this")
    cid = stewardship.record_consent(cat, data["name"], scope, subject, given_by, _date(given_at, "given_at"),
                                     purposes, by=who.name, expires_at=_date(expires_at, "expires_at"),
                                     evidence=evidence or None)
    return _done(request, f"/collections/{collection_id}", {"consent": cid})


@router.post("/items/{item_id}/withdraw", include_in_schema=False, dependencies=[Depends(csrf_checked)])
@router.post("/api/v1/items/{item_id}/withdraw", dependencies=[Depends(csrf_checked)])
def withdraw_item(request: Request, item_id: Id, who: Steward, reason: Annotated[str, Form(min_length=1,
                                                                                          max_length=2000)]):
    """Record the withdrawal of this item: affected models are marked, its bytes erased (lineage.withdraw)."""
    from hearthkit.lineage.withdraw import withdraw

    it = _stewarded_item(request, who, item_id)
    if it["withdrawn"]:
        raise HTTPException(400, "this item was already withdrawn")
    impact = withdraw(request.app.state.catalog, _store(request), it["collection"]["name"],
                      "item", it["external_id"], by=who.name, reason=reason)
    if impact.unreadable and not wants_json(request):  # the steward sees now what could not be erased
        from sqlalchemy import select

        from hearthkit.catalog.models import Collection, Withdrawal
        from hearthkit.web.routes.withdrawals import result_page

        with request.app.state.catalog.session() as s:
            wid = s.scalar(select(Withdrawal.id).join(Collection, Collection.id == Withdrawal.collection_id)
                           .where(Collection.name == it["collection"]["name"]).order_by(Withdrawal.id.desc()).limit(1))
        return result_page(request, who, wid, impact.unreadable)
    return _done(request, f"/items/{item_id}", {"items": impact.items, "models": impact.models,
                                                "unreadable": impact.unreadable})
