"""What a steward's start page lists: pending requests, models trained on their data, audit events, withdrawals."""

from __future__ import annotations

import json

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AccessRequest, Approval, AuditEvent, Collection, Item, Model, RunItem, Withdrawal

RECENT = 20  # rows per list on the start page; the full lists are on their own pages
AUDIT_WINDOW = 2000  # newest events scanned for the communities' own


def steward_overview(catalog: Catalog, communities: list[str]) -> dict:
    """The start-page lists for a steward of COMMUNITIES (only rows that concern those communities)."""
    mine = set(communities)
    with catalog.session() as s:
        colls = {c.id: c.name for c in s.scalars(select(Collection).where(Collection.community.in_(mine)))}
        pending = []
        for r in s.scalars(select(AccessRequest).where(AccessRequest.status == "pending")
                           .order_by(AccessRequest.id.desc())):
            decided = set(s.scalars(select(Approval.community).where(Approval.request_id == r.id)))
            waiting = sorted((set(r.needs or ()) & mine) - decided)
            if waiting:
                pending.append({"id": r.id, "requester": r.requester, "purpose": r.purpose, "recipe": r.recipe,
                                "collections": list(r.collections), "waiting_for": waiting,
                                "created_at": r.created_at.isoformat(timespec="seconds")})
            if len(pending) >= RECENT:
                break
        models = []
        if colls:
            trained = (select(Model).where(Model.run_id.in_(
                select(RunItem.run_id).join(Item, Item.id == RunItem.item_id)
                .where(Item.collection_id.in_(colls)))).order_by(Model.id.desc()).limit(RECENT))
            models = [{"name": m.name, "recipe": m.recipe, "status": m.status, "status_reason": m.status_reason,
                       "restrictions": list(m.restrictions or ()), "created_at": m.created_at.isoformat(
                           timespec="seconds")} for m in s.scalars(trained)]
        withdrawals = [{"id": w.id, "collection": colls[w.collection_id], "scope": w.scope, "subject": w.subject,
                        "by": w.by, "reason": w.reason, "items": w.items, "at": w.at.isoformat(timespec="seconds")}
                       for w in s.scalars(select(Withdrawal).where(Withdrawal.collection_id.in_(colls))
                                          .order_by(Withdrawal.id.desc()).limit(RECENT))] if colls else []
        events = []
        names = set(colls.values())
        for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(AUDIT_WINDOW)):
            data = json.loads(e.data)
            if _concerns(data, mine, names):
                events.append({"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "data": data})
                if len(events) >= RECENT:
                    break
    return {"pending_requests": pending, "models": models, "withdrawals": withdrawals, "audit_events": events}


def _concerns(data: dict, communities: set[str], collections: set[str]) -> bool:
    """Whether an audit event's data names one of the communities or one of their collections."""
    if data.get("community") in communities or data.get("collection") in collections:
        return True
    named = data.get("collections")
    return isinstance(named, list) and any(c in collections for c in named)
