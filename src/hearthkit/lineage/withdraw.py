"""Consent withdrawal: record it, find every model that learned from the items, erase the bytes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Model, Run, RunItem, Withdrawal
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.stewardship import require_steward
from hearthkit.lineage.registry import children
from hearthkit.store.text import PRIVATE_META, has_words, objects_of
from hearthkit.store.vault import Store

SCOPES = ("item", "speaker", "collection")


@dataclass
class Impact:
    """Which models a withdrawal touches, directly (their manifest) or through a parent."""

    items: int = 0
    models: list[dict] = field(default_factory=list)  # name, run, affected items, manifest items, via
    erased_objects: int = 0
    erased_manifests: int = 0  # run manifests whose entries of these items lost their words
    erased_index_items: int = 0  # entries taken out of spoken-term indexes
    unreadable: list[str] = field(default_factory=list)  # derived files that could not be read: words may remain


def _items_query(coll: Collection, scope: str, subject: str):
    """SELECT of the ids of items covered by a withdrawal."""
    q = select(Item.id).where(Item.collection_id == coll.id)
    if scope == "item":
        return q.where(Item.external_id == subject)
    if scope == "speaker":
        return q.where(Item.speaker == subject)
    return q


def impact(s: Session, item_ids) -> list[dict]:
    """Models whose manifest holds any of ITEM_IDS (a select or a list), plus all their descendants."""
    hits = s.execute(
        select(RunItem.run_id, func.count()).where(RunItem.item_id.in_(item_ids)).group_by(RunItem.run_id)
    ).all()
    if not hits:
        return []
    per_run = dict(hits)
    totals = dict(s.execute(select(RunItem.run_id, func.count()).where(RunItem.run_id.in_(per_run))
                            .group_by(RunItem.run_id)).all())
    runs = {r.id: r.name for r in s.scalars(select(Run).where(Run.id.in_(per_run)))}
    out: dict[int, dict] = {}
    for m in s.scalars(select(Model).where(Model.run_id.in_(per_run))):
        out[m.id] = {"model": m.name, "run": runs[m.run_id], "affected_items": per_run[m.run_id],
                     "manifest_items": totals[m.run_id], "via": None, "status": m.status}
    # Descendants inherit the impact through every parent edge: transfer (parent_id) and further parents
    # (model_parents, e.g. an st decoder started from an mt model), breadth first over the model graph.
    frontier = list(out)
    while frontier:
        reached = children(s, frontier)
        frontier = []
        for m, via in reached:
            if m.id in out:
                continue
            out[m.id] = {"model": m.name, "run": s.get(Run, m.run_id).name, "affected_items": 0,
                         "manifest_items": s.scalar(select(func.count()).where(RunItem.run_id == m.run_id)),
                         "via": s.get(Model, via).name, "status": m.status}
            frontier.append(m.id)
    return sorted(out.values(), key=lambda r: r["model"])


def withdraw(catalog: Catalog, store: Store, collection: str, scope: str, subject: str | None, by: str,
             reason: str | None = None, now: datetime | None = None, allow_empty: bool = False) -> Impact:
    """Withdraw one item, a speaker or a collection: mark models, then erase the items' bytes from the store."""
    if scope not in SCOPES:
        raise HearthError(f"withdrawal scope {scope!r}: use one of {', '.join(SCOPES)}")
    now = now or datetime.now(UTC)
    result = Impact()
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == collection))
        if coll is None:
            raise HearthError(f"collection {collection!r} is not in the catalog; see `hearth data ls`")
        subject = collection if scope == "collection" else subject
        if not subject:
            raise HearthError(f"withdrawing a {scope} needs its id")
        ids = _items_query(coll, scope, subject)
        result.items = s.scalar(select(func.count()).select_from(ids.subquery()))
        if result.items == 0:
            if allow_empty:  # e.g. a consent record whose speaker has no recordings yet
                return result
            raise HearthError(f"no {scope} {subject!r} in collection {collection}")
        # A person may withdraw their own recordings; anything else is a steward's act for the community.
        speakers = set(s.scalars(select(Item.speaker).where(Item.id.in_(ids)).distinct()))
        if scope == "collection" or speakers != {by}:
            require_steward(s, by, coll.community)
        result.models = impact(s, ids)
        s.execute(update(Item).where(Item.id.in_(ids), Item.withdrawn_at.is_(None)).values(withdrawn_at=now))
        # Consent itself ends too, so nothing new can be planned on the strength of the old record.
        if scope == "speaker":
            s.execute(update(Consent).where(Consent.collection_id == coll.id, Consent.scope == "individual",
                                            Consent.subject == subject, Consent.withdrawn_at.is_(None))
                      .values(withdrawn_at=now))
        elif scope == "collection":
            s.execute(update(Consent).where(Consent.collection_id == coll.id, Consent.withdrawn_at.is_(None))
                      .values(withdrawn_at=now))
        record = Withdrawal(collection_id=coll.id, scope=scope, subject=subject, by=by, reason=reason, at=now,
                            items=result.items)
        s.add(record)
        s.flush()
        withdrawal = {"withdrawal": record.id, "at": now.date().isoformat()}
        item_ids = set(s.scalars(ids))
        audit.append(s, "withdrawal", by, collection=collection, scope=scope, subject=subject, items=result.items,
                     models=[r["model"] for r in result.models], at=now.isoformat(), reason=reason)
        why = f"{scope} {subject} of {collection} withdrawn on {now.date().isoformat()}"
        names = [r["model"] for r in result.models]
        if names:
            s.execute(update(Model).where(Model.name.in_(names), Model.status == "active")
                      .values(status="needs-retrain", status_reason=why))
        digests, cleared = [], 0
        for item in s.scalars(select(Item).where(Item.id.in_(ids))):
            digests += objects_of(item.content_hash, item.meta)
            if has_words(item.text, item.meta):  # the words go with the recording: no transcript stays behind
                item.text = None
                item.meta = {k: v for k, v in (item.meta or {}).items() if k not in PRIVATE_META}
                cleared += 1
        still_used = {d for (d,) in s.execute(select(Item.content_hash).where(
            Item.content_hash.in_(digests), Item.withdrawn_at.is_(None)))}
    if cleared:
        catalog.scrub()  # nor in the database's free pages or log (PostgreSQL rewrites the table: only when needed)
    # Erase only after the catalog committed: bytes shared with a still-consented item stay (a sealed text object
    # belongs to one item only). A sealed object is ciphertext under its collection's key, so deleting it is
    # erasure; other items keep the key.
    for d in set(digests) - still_used:
        result.erased_objects += int(store.delete(d))
    # Then the copies of their words the workspace derived: run manifests (kept, verifiable, wordless for these
    # items) and spoken-term indexes (the items taken out). A re-run finishes an interrupted erasure.
    from hearthkit.lineage.erase import erase_derived

    erased = erase_derived(catalog, store, collection, item_ids, withdrawal)
    result.erased_manifests, result.erased_index_items = erased.manifests, erased.index_items
    result.unreadable = erased.unreadable
    if erased.after or erased.index_items:  # the erased manifests' new hashes anchored in the audit chain
        audit.record(catalog, "withdrawal", by, phase="erasure", collection=collection, withdrawal=withdrawal,
                     manifests=erased.after, index_items=erased.index_items)
    return result


def consent_scope(catalog: Catalog, consent_id: int) -> tuple[str, str, str]:
    """(collection, scope, subject) of the items a consent record covers: a speaker's, or the whole collection."""
    with catalog.session() as s:
        c = s.get(Consent, consent_id)
        coll = s.get(Collection, c.collection_id)
        return (coll.name, "speaker", c.subject) if c.scope == "individual" else (coll.name, "collection", coll.name)
