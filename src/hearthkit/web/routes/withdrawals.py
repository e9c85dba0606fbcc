"""Withdrawal for stewards: record a person's or an item's withdrawal, see every affected model, start retraining."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel
from sqlalchemy import select

from hearthkit.catalog.models import Collection, Model, Withdrawal
from hearthkit.lineage import graph as g
from hearthkit.lineage.revoke import revoke_model
from hearthkit.lineage.withdraw import SCOPES, withdraw
from hearthkit.web.deps import Actor, csrf_checked, render, require_scope
from hearthkit.web.paging import PER_PAGE, Page, page_number

router = APIRouter()
WEB_SCOPES = ("speaker", "item")  # a whole collection is withdrawn at the terminal (`hearth consent withdraw`)


def _record(s, w: Withdrawal, coll: str) -> dict:
    return {"id": w.id, "collection": coll, "scope": w.scope, "subject": w.subject, "by": w.by, "reason": w.reason,
            "item_count": w.items, "at": w.at.isoformat(timespec="seconds")}


def withdrawal_list(request: Request, who: Actor) -> dict:
    """Withdrawals in collections of WHO's communities, newest first, and the collections WHO may withdraw from."""
    page = page_number(request.query_params.get("page"))
    with request.app.state.catalog.session() as s:
        colls = {c.id: c.name for c in s.scalars(select(Collection).where(Collection.community.in_(who.stewards()))
                                                 .order_by(Collection.name))}
        rows = list(s.scalars(select(Withdrawal).where(Withdrawal.collection_id.in_(colls))
                              .order_by(Withdrawal.id.desc()))) if colls else []
        chunk = [_record(s, w, colls[w.collection_id]) for w in rows[(page - 1) * PER_PAGE:page * PER_PAGE]]
        for r, w in zip(chunk, rows[(page - 1) * PER_PAGE:page * PER_PAGE], strict=True):
            r["models"] = g.withdrawal_impact(s, w)
    return {"withdrawals": chunk, "collections": sorted(colls.values()), "scopes": list(WEB_SCOPES),
            "page": Page(chunk, len(rows), page, PER_PAGE).as_dict()}


def withdrawal_detail(request: Request, who: Actor, withdrawal_id: int) -> dict:
    with request.app.state.catalog.session() as s:
        w = s.get(Withdrawal, withdrawal_id)
        coll = s.get(Collection, w.collection_id) if w else None
        if w is None or coll.community not in who.stewards():
            raise HTTPException(404, "no such withdrawal (or not one of your communities)")
        return {"withdrawal": _record(s, w, coll.name), "models": g.withdrawal_impact(s, w)}


def record(request: Request, who: Actor, collection: str, scope: str, subject: str, reason: str | None) -> dict:
    """Withdraw through the same library function as `hearth consent withdraw`; return the record and its impact."""
    if scope not in WEB_SCOPES or scope not in SCOPES:
        raise HTTPException(400, "scope: choose speaker (a person's recordings) or item (one recording)")
    subject = subject.strip()
    if not subject:
        raise HTTPException(400, "subject: name the speaker id or the item id")
    with request.app.state.catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == collection))
        own = scope == "speaker" and subject == who.name  # a person may withdraw their own recordings
        if coll is None or not (coll.community in who.stewards() or own):
            raise HTTPException(404, "collections: no such collection among your communities")
    from hearthkit.store.vault import workspace_store

    ws = request.app.state.ws
    imp = withdraw(request.app.state.catalog, workspace_store(ws), collection, scope, subject, who.name,
                   (reason or "").strip() or None)
    with request.app.state.catalog.session() as s:
        wid = s.scalar(select(Withdrawal.id).where(Withdrawal.collection_id == coll.id)
                       .order_by(Withdrawal.id.desc()).limit(1))
    return {"id": wid, "item_count": imp.items, "erased_objects": imp.erased_objects,
            "models": [{**m, "status": "needs retrain" if m["status"] == "active" else g.status_word(m["status"])}
                       for m in imp.models],
            "unreadable": imp.unreadable}  # derived files not erased: the withdrawn items' words may remain


def result_page(request: Request, who: Actor, withdrawal_id: int, unreadable: list[str]):
    """The withdrawal's page, warning the steward of each derived file whose words could not be erased."""
    return render(request, "withdrawals/detail.html",
                  {**withdrawal_detail(request, who, withdrawal_id), "unreadable": unreadable})


def retrain(request: Request, who: Actor, model: str) -> dict:
    """Start `hearth retrain MODEL` (the same library function) as a job: only a steward whose data it learned from."""
    with request.app.state.catalog.session() as s:
        m = s.scalar(select(Model).where(Model.name == model))
        if m is None or not (g.communities_of(s, m) & who.stewards()):
            raise HTTPException(404, "no such model among your communities' models")
        if m.status != "needs-retrain":
            raise HTTPException(400, f"model {model} is {g.status_word(m.status)}; only a model that needs "
                                     "retraining is retrained from here")
    ws, catalog = request.app.state.ws, request.app.state.catalog

    def work(job) -> dict:
        from hearthkit.lineage.retrain import retrain as run_retrain

        job.stage = "training"
        new, _ = run_retrain(ws, catalog, model, lambda line: None, lambda line: None)
        return {"model": new, "supersedes": model}

    from hearthkit.web.routes.use import serving_state

    job = serving_state(request.app)[0].start(who.person_id, "retrain", work)
    return {"job": job.id}


def revoke(request: Request, who: Actor, model: str, reason: str) -> dict:
    """Revoke MODEL outright with the library's `revoke_model` (as `hearth models revoke`): its stewards only."""
    with request.app.state.catalog.session() as s:
        m = s.scalar(select(Model).where(Model.name == model))
        if m is None or not (g.communities_of(s, m) & who.stewards()):
            raise HTTPException(404, "no such model among your communities' models")
    done = revoke_model(request.app.state.catalog, model, who.name, reason)
    return {"model": done.model, "status": g.status_word("revoked"), "descendants_needing_retrain": done.descendants}


@router.get("/withdrawals", include_in_schema=False)
def withdrawals_page(request: Request, who: Actor = Depends(require_scope("read"))):
    return render(request, "withdrawals/list.html", withdrawal_list(request, who))


@router.get("/api/v1/withdrawals")
def withdrawals_api(request: Request, who: Actor = Depends(require_scope("read"))) -> dict:
    return withdrawal_list(request, who)


@router.post("/withdrawals", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def withdraw_form(request: Request, who: Actor = Depends(require_scope("admin"))):
    form = await request.form()
    done = record(request, who, str(form.get("collection", "")), str(form.get("scope", "")),
                  str(form.get("subject", "")), str(form.get("reason", "")))
    if done["unreadable"]:  # shown now: the page a redirect leads to no longer knows what could not be erased
        return result_page(request, who, done["id"], done["unreadable"])
    return RedirectResponse(f"/withdrawals/{done['id']}", status_code=303)


class NewWithdrawal(BaseModel):
    """A withdrawal: a speaker's recordings or one item of a collection, with the reason."""

    collection: str
    scope: str
    subject: str
    reason: str | None = None


@router.post("/api/v1/withdrawals", status_code=201, dependencies=[Depends(csrf_checked)])
def withdraw_api(request: Request, body: NewWithdrawal, who: Actor = Depends(require_scope("admin"))) -> dict:
    return record(request, who, body.collection, body.scope, body.subject, body.reason)


@router.get("/withdrawals/{withdrawal_id}", include_in_schema=False)
def withdrawal_page(request: Request, withdrawal_id: int, who: Actor = Depends(require_scope("read"))):
    return render(request, "withdrawals/detail.html", withdrawal_detail(request, who, withdrawal_id))


@router.get("/api/v1/withdrawals/{withdrawal_id}")
def withdrawal_api(request: Request, withdrawal_id: int, who: Actor = Depends(require_scope("read"))) -> dict:
    return withdrawal_detail(request, who, withdrawal_id)


@router.post("/models/{name}/retrain", include_in_schema=False, dependencies=[Depends(csrf_checked)])
def retrain_form(request: Request, name: str, who: Actor = Depends(require_scope("admin"))):
    return RedirectResponse(f"/use/jobs/{retrain(request, who, name)['job']}", status_code=303)


@router.post("/api/v1/models/{name}/retrain", status_code=202, dependencies=[Depends(csrf_checked)])
def retrain_api(request: Request, name: str, who: Actor = Depends(require_scope("admin"))) -> dict:
    return retrain(request, who, name)


@router.post("/models/{name}/revoke", include_in_schema=False, dependencies=[Depends(csrf_checked)])
async def revoke_form(request: Request, name: str, who: Actor = Depends(require_scope("admin"))):
    form = await request.form()
    done = revoke(request, who, name, str(form.get("reason", "")))
    return RedirectResponse(f"/models/{quote(done['model'], safe='')}", status_code=303)


class Revocation(BaseModel):
    """Why the model must not be used any more (required; it goes to the audit log)."""

    reason: str = ""


@router.post("/api/v1/models/{name}/revoke", dependencies=[Depends(csrf_checked)])
def revoke_api(request: Request, name: str, body: Revocation, who: Actor = Depends(require_scope("admin"))) -> dict:
    return revoke(request, who, name, body.reason)
