"""Training requests in the browser: a researcher files one; the stewards review its manifest and decide."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from hearthkit.catalog.models import AccessRequest, Collection
from hearthkit.errors import HearthError
from hearthkit.governance import requests as rq
from hearthkit.governance.review import review
from hearthkit.governance.vocabulary import Purpose
from hearthkit.recipes import REGISTRY as RECIPES
from hearthkit.web.deps import Actor, csrf_checked, render, require_scope
from hearthkit.web.paging import PER_PAGE, Page, page_number

router = APIRouter()
DECISIONS = ("approve", "deny")


def _collections(s, who: Actor) -> list[dict]:
    """Collections WHO may browse, so may name in a request (browsing access, as the collection pages apply it)."""
    from hearthkit.governance.access import collection_visible
    from hearthkit.web.deps import viewer

    q = (select(Collection.name, Collection.community)
         .where(collection_visible(viewer(who), s.get_bind().dialect.name)).order_by(Collection.name))
    return [{"name": n, "community": c} for n, c in s.execute(q)]


def _involved(s, row: AccessRequest) -> set[str]:
    """Communities a request concerns: those that must approve it and those whose collections it names."""
    owners = set(s.scalars(select(Collection.community).where(Collection.name.in_(row.collections or []))))
    return owners | set(row.needs or [])


def _may_view(s, who: Actor, row: AccessRequest) -> bool:
    return row.requester == who.name or bool(who.stewards() & _involved(s, row))


def _row(row: AccessRequest) -> dict:
    return {"id": row.id, "requester": row.requester, "purpose": row.purpose, "recipe": row.recipe,
            "collections": list(row.collections or []), "status": row.status, "needs": list(row.needs or []),
            "created_at": row.created_at.isoformat(timespec="seconds") if row.created_at else None}


def request_list(request: Request, who: Actor) -> dict:
    """Requests WHO filed, and those concerning the communities WHO stewards (newest first, one page)."""
    page = page_number(request.query_params.get("page"))
    with request.app.state.catalog.session() as s:
        rows = [_row(r) for r in s.scalars(select(AccessRequest).order_by(AccessRequest.id.desc()))
                if _may_view(s, who, r)]
    chunk = rows[(page - 1) * PER_PAGE:page * PER_PAGE]
    return {"requests": chunk, "page": Page(chunk, len(rows), page, PER_PAGE).as_dict()}


def request_detail(request: Request, who: Actor, request_id: int) -> dict:
    """One request as WHO may see it; its stewards also get the manifest review. 404 for anyone else."""
    cat = request.app.state.catalog
    with cat.session() as s:
        row = s.get(AccessRequest, request_id)
        if row is None or not _may_view(s, who, row):
            raise HTTPException(404, "no such request (or it is not yours to see)")
        mine = who.stewards() & _involved(s, row)
    req = rq.get_request(cat, request_id)
    doc = {"request": {**_row_from(req), "decisions": [{"community": c, "steward": st, "decision": d}
                                                       for c, st, d in req.decisions]},
           "can_decide": req.status == "pending" and bool(mine & (set(req.needs) - {c for c, _, _ in req.decisions})),
           "review": None}
    if mine:
        try:
            doc["review"] = review(cat, request_id, mine).to_dict()
            doc["review"].pop("request")
        except HearthError as exc:  # e.g. a collection deleted since: the page still shows the request and why
            doc["review_error"], doc["can_decide"] = str(exc), False
    return doc


def _row_from(req: rq.StoredRequest) -> dict:
    return {"id": req.id, "requester": req.requester, "purpose": req.purpose, "recipe": req.recipe,
            "collections": list(req.collections), "as_of": req.as_of, "status": req.status, "needs": list(req.needs),
            "manifest_hash": req.manifest_hash}


def file_request(request: Request, who: Actor, purpose: str, collections: list[str], recipe: str) -> int:
    """Store a request by WHO (the signed-in account, never a typed name) over collections WHO may see."""
    if purpose not in {p.value for p in Purpose}:
        raise HTTPException(400, f"purpose {purpose!r}: choose one of {', '.join(p.value for p in Purpose)}")
    if recipe not in RECIPES:
        raise HTTPException(400, f"recipe {recipe!r}: choose one of {', '.join(sorted(RECIPES))}")
    if not collections:
        raise HTTPException(400, "collections: choose at least one collection")
    with request.app.state.catalog.session() as s:
        allowed = {c["name"] for c in _collections(s, who)}
    unknown = sorted(set(collections) - allowed)
    if unknown:  # the same answer for a collection that does not exist and one WHO may not see
        raise HTTPException(400, f"collections: {unknown[0]!r} is not a collection you may see")
    today = datetime.now(UTC).date().isoformat()
    stored, _ = rq.create_request(request.app.state.catalog, purpose, who.name, sorted(set(collections)), recipe,
                                  today)
    return stored.id


def decide(request: Request, who: Actor, request_id: int, decision: str, manifest_hash: str, note: str | None):
    """WHO's decision for the communities they steward that the request still needs, bound to MANIFEST_HASH."""
    if decision not in DECISIONS:
        raise HTTPException(400, "decision: choose approve or deny")
    if not manifest_hash:
        raise HTTPException(400, "manifest_hash: missing; reload the request page and decide again")
    cat = request.app.state.catalog
    with cat.session() as s:
        row = s.get(AccessRequest, request_id)
        if row is None or not _may_view(s, who, row):
            raise HTTPException(404, "no such request (or it is not yours to see)")
        if not who.stewards() & set(row.needs or []):
            raise HTTPException(403, "you are not a steward of a community whose approval this request needs")
    stale = rq.get_request(cat, request_id).manifest_hash != manifest_hash
    if stale:
        raise HTTPException(409, "the request's manifest is not the one you reviewed (it changed since you opened "
                                 "the page); reload the request, review it again and decide")
    return rq.decide(cat, request_id, who.name, decision, None, (note or "").strip() or None, manifest_hash)


def _ctx(doc: dict) -> dict:
    """The detail page's context: the stored request as `req` (`request` is the HTTP request in templates)."""
    return {"req": doc["request"], **{k: v for k, v in doc.items() if k != "request"}}


@router.get("/requests", include_in_schema=False)
def requests_page(request: Request, who: Actor = Depends(require_scope("read"))):
    return render(request, "requests/list.html", request_list(request, who))


@router.get("/api/v1/requests")
def requests_api(request: Request, who: Actor = Depends(require_scope("read"))) -> dict:
    return request_list(request, who)


@router.get("/requests/new", include_in_schema=False)
def new_request_page(request: Request, who: Actor = Depends(require_scope("request"))):
    with request.app.state.catalog.session() as s:
        colls = _collections(s, who)
    return render(request, "requests/new.html", {"collections": colls, "purposes": [p.value for p in Purpose],
                                                 "recipes": sorted(RECIPES)})


@router.post("/requests", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def new_request(request: Request, who: Actor = Depends(require_scope("request"))):
    form = await request.form()
    rid = file_request(request, who, str(form.get("purpose", "")), [str(c) for c in form.getlist("collections")],
                       str(form.get("recipe", "")))
    from fastapi.responses import RedirectResponse

    return RedirectResponse(f"/requests/{rid}", status_code=303)


class NewRequest(BaseModel):
    """A training request: purpose, collections, recipe (the requester is the token's or session's account)."""

    purpose: str
    collections: list[str] = Field(min_length=1)
    recipe: str


@router.post("/api/v1/requests", status_code=201, dependencies=[Depends(csrf_checked)])
def new_request_api(request: Request, body: NewRequest, who: Actor = Depends(require_scope("request"))) -> dict:
    rid = file_request(request, who, body.purpose, body.collections, body.recipe)
    return request_detail(request, who, rid)


@router.get("/requests/{request_id}", include_in_schema=False)
def request_page(request: Request, request_id: int, who: Actor = Depends(require_scope("read"))):
    doc = request_detail(request, who, request_id)
    return render(request, "requests/detail.html", _ctx(doc))


@router.get("/api/v1/requests/{request_id}")
def request_api(request: Request, request_id: int, who: Actor = Depends(require_scope("read"))) -> dict:
    return request_detail(request, who, request_id)


@router.post("/requests/{request_id}/decision", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def decision_form(request: Request, request_id: int, who: Actor = Depends(require_scope("approve"))):
    form = await request.form()
    try:
        decide(request, who, request_id, str(form.get("decision", "")), str(form.get("manifest_hash", "")),
               str(form.get("note", "")))
    except HTTPException as exc:
        if exc.status_code != 409:
            raise
        doc = request_detail(request, who, request_id)
        return render(request, "requests/detail.html", {**_ctx(doc), "error": exc.detail},
                      status=409)
    from fastapi.responses import RedirectResponse

    return RedirectResponse(f"/requests/{request_id}", status_code=303)


class Decision(BaseModel):
    """A steward's decision, bound to the manifest hash they reviewed."""

    decision: str
    manifest_hash: str
    note: str | None = None


@router.post("/api/v1/requests/{request_id}/decision", dependencies=[Depends(csrf_checked)])
def decision_api(request: Request, request_id: int, body: Decision,
                 who: Actor = Depends(require_scope("approve"))) -> dict:
    decide(request, who, request_id, body.decision, body.manifest_hash, body.note)
    return request_detail(request, who, request_id)
