"""The audit log as stewards read it: filtered (kind, actor, dates), paged, only their communities' events, and
one verdict for the whole chain and its anchor."""

from __future__ import annotations

import json
from datetime import date

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AuditEvent, Collection, Item, Model, Run, RunItem
from hearthkit.governance import audit


def concerns(data: dict, communities: set[str], collections: set[str], models: set[str],
             runs: set[str] = frozenset()) -> bool:
    """Whether an event names one of COMMUNITIES, one of their COLLECTIONS, or one of the MODELS or RUNS that
    learned from them."""
    if data.get("community") in communities or data.get("collection") in collections:
        return True
    if data.get("model") in models or data.get("run") in runs:
        return True
    for key, pool in (("communities", communities), ("collections", collections), ("needs", communities)):
        named = data.get(key)
        if isinstance(named, list) and any(x in pool for x in named):
            return True
    return False


def events_page(catalog: Catalog, communities: set[str] | None, kind: str | None = None, actor: str | None = None,
                since: date | None = None, until: date | None = None, page: int = 1,
                per_page: int = 50) -> tuple[list[dict], int]:
    """One page of events, newest first, and how many match; COMMUNITIES None means every event (the owner)."""
    from hearthkit.lineage.graph import communities_of

    q = select(AuditEvent).order_by(AuditEvent.seq.desc())
    if kind:
        q = q.where(AuditEvent.kind == kind)
    if actor:
        q = q.where(AuditEvent.actor == actor)
    if since:
        q = q.where(AuditEvent.at >= since.isoformat())
    if until:
        q = q.where(AuditEvent.at < date.fromordinal(until.toordinal() + 1).isoformat())  # through that whole day
    rows: list[dict] = []
    total = 0
    with catalog.session() as s:
        if communities is not None:
            colls = set(s.scalars(select(Collection.name).where(Collection.community.in_(communities))))
            models = {m.name for m in s.scalars(select(Model)) if communities_of(s, m) & communities}
            runs = set(s.scalars(select(Run.name).join(RunItem, RunItem.run_id == Run.id)
                                 .join(Item, Item.id == RunItem.item_id)
                                 .join(Collection, Collection.id == Item.collection_id)
                                 .where(Collection.community.in_(communities)).distinct()))
        for e in s.scalars(q):
            data = json.loads(e.data)
            if communities is not None and not concerns(data, communities, colls, models, runs):
                continue
            total += 1
            if (page - 1) * per_page < total <= page * per_page:
                rows.append({"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "data": data})
    return rows, total


def check(catalog: Catalog, ws=None) -> dict:
    """The chain walked and its head compared with the anchor: state intact | tampered | anchor_mismatch."""
    v = audit.verify(catalog)
    if not v.ok:
        return {"state": "tampered", "event": v.broken_seq, "events": v.events, "message": v.reason, "head": v.head}
    out = {"state": "intact", "event": None, "events": v.events, "head": v.head,
           "message": f"{v.events} events, every link holds"}
    try:
        from hearthkit.governance import anchor
    except ImportError:  # the head anchor is not part of this build: the chain alone was checked
        return out
    a = anchor.check(catalog, ws)
    out["anchor"] = {"ok": a.ok, "state": a.state, "message": a.message}
    if not a.ok:
        out.update(state="anchor_mismatch", event=a.seq, message=a.message)
    return out
