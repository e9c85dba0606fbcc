"""The audit log for stewards: their communities' events with filters, paged, and `verify` of chain and anchor."""

from __future__ import annotations

from datetime import date

from fastapi import APIRouter, Depends, HTTPException, Request

from hearthkit.governance import audit
from hearthkit.governance.audit_view import check, events_page
from hearthkit.web.deps import Actor, render, require_scope
from hearthkit.web.paging import PER_PAGE, Page, page_number

router = APIRouter()


def _steward(who: Actor) -> set[str]:
    mine = who.stewards()
    if not mine:
        raise HTTPException(403, "the audit log is for the stewards of a community")
    return mine


def _day(value: str | None, field: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise HTTPException(400, f"{field}: expected a date YYYY-MM-DD, not {value[:40]!r}") from None


def audit_log(request: Request, who: Actor) -> dict:
    """One page of the events of WHO's communities, filtered by kind, actor and dates from the query string."""
    mine = _steward(who)
    q = request.query_params
    kind = q.get("kind") or None
    if kind and kind not in audit.KINDS:
        raise HTTPException(400, f"kind: {kind[:40]!r} is not an event kind; choose one of "
                                 f"{', '.join(sorted(audit.KINDS))}")
    filters = {"kind": kind, "actor": (q.get("actor") or "").strip() or None,
               "since": _day(q.get("since"), "since"), "until": _day(q.get("until"), "until")}
    page = page_number(q.get("page"))
    rows, total = events_page(request.app.state.catalog, mine, page=page, per_page=PER_PAGE, **filters)
    return {"events": rows, "page": Page(rows, total, page, PER_PAGE).as_dict(), "kinds": sorted(audit.KINDS),
            "filters": {k: (v.isoformat() if isinstance(v, date) else v) for k, v in filters.items()}}


def verify(request: Request, who: Actor) -> dict:
    _steward(who)
    return check(request.app.state.catalog, request.app.state.ws)


@router.get("/audit", include_in_schema=False)
def audit_page(request: Request, who: Actor = Depends(require_scope("read"))):
    doc = audit_log(request, who)
    prefix = "".join(f"{k}={v}&" for k, v in doc["filters"].items() if v)
    return render(request, "audit/log.html", {**doc, "query_prefix": prefix})


@router.get("/api/v1/audit")
def audit_api(request: Request, who: Actor = Depends(require_scope("read"))) -> dict:
    return audit_log(request, who)


@router.get("/audit/verify", include_in_schema=False)
def verify_page(request: Request, who: Actor = Depends(require_scope("read"))):
    return render(request, "audit/verify.html", {"verdict": verify(request, who)})


@router.get("/api/v1/audit/verify")
def verify_api(request: Request, who: Actor = Depends(require_scope("read"))) -> dict:
    return verify(request, who)
