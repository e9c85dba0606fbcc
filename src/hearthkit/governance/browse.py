"""Browsing the catalog: collections, items and search, every query filtered by governance/access.py."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import (
    Collection,
    Consent,
    Item,
    ItemProtocol,
    Label,
    Protocol,
)
from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v
from hearthkit.governance.access import (
    LEVELS,
    PROTOCOL_LABELS,
    Viewer,
    collection_visible,
    item_visible,
    visible_items,
)

MAX_QUERY = 200  # characters of a search


def _dialect(catalog: Catalog) -> str:
    return catalog.engine.dialect.name


def _label(lab: Label) -> dict:
    """A label as shown: the community's own words and language when recorded, else the key."""
    return {"id": lab.id, "key": lab.key, "text": lab.text or lab.key, "language": lab.language,
            "community": lab.community, "category": v.LABELS.get(lab.key, "unknown"),
            "season": f"{lab.season_from}..{lab.season_to}" if lab.season_from else None,
            "on": "item" if lab.item_id else "collection"}


def _item_row(it: Item) -> dict:
    return {"id": it.id, "external_id": it.external_id, "kind": it.kind, "duration_s": it.duration_s,
            "speaker": it.speaker, "dialect": it.dialect, "withdrawn": it.withdrawn_at is not None}


def collections(catalog: Catalog, viewer: Viewer, offset: int, limit: int) -> tuple[list[dict], int]:
    """(a page of the collections VIEWER may see, each with the count of its items they may see; their total)."""
    d = _dialect(catalog)
    where = collection_visible(viewer, d)
    with catalog.session() as s:
        total = s.scalar(select(func.count()).select_from(Collection).where(where))
        rows = s.scalars(select(Collection).where(where).order_by(Collection.name).offset(offset).limit(limit)).all()
        ids = [c.id for c in rows]
        counts = dict(s.execute(select(Item.collection_id, func.count()).join(
            Collection, Collection.id == Item.collection_id).where(Item.collection_id.in_(ids or [-1]),
                                                                    item_visible(viewer, d))
            .group_by(Item.collection_id)).all())
        return [{"id": c.id, "name": c.name, "community": c.community, "access": c.access,
                 "items": counts.get(c.id, 0)} for c in rows], total


def collection(catalog: Catalog, viewer: Viewer, collection_id: int, offset: int, limit: int) -> dict | None:
    """One collection VIEWER may see, with a page of its items they may see; None when not visible."""
    d = _dialect(catalog)
    with catalog.session() as s:
        c = s.scalar(select(Collection).where(Collection.id == collection_id, collection_visible(viewer, d)))
        if c is None:
            return None
        q = visible_items(viewer, d).where(Item.collection_id == c.id)
        total = s.scalar(select(func.count()).select_from(q.subquery()))
        items = [_item_row(it) for it in s.scalars(q.order_by(Item.external_id).offset(offset).limit(limit))]
        labels = [_label(lab) for lab in s.scalars(select(Label).where(Label.collection_id == c.id)
                                                   .order_by(Label.id))]
        steward = c.community in viewer.stewards_of
        member = steward or c.community in viewer.communities
        consents = []
        # Individual consent names a person: their community's members and stewards see it; others the collective.
        for k in s.scalars(select(Consent).where(Consent.collection_id == c.id).order_by(Consent.id)):
            if k.scope == "collective" or member:
                consents.append({"id": k.id, "scope": k.scope, "subject": k.subject, "given_by": k.given_by,
                                 "given_at": k.given_at.date().isoformat(), "purposes": list(k.purposes),
                                 "expires_at": k.expires_at.date().isoformat() if k.expires_at else None,
                                 "withdrawn_at": k.withdrawn_at.date().isoformat() if k.withdrawn_at else None,
                                 "evidence": k.evidence if member else None})
        return {"id": c.id, "name": c.name, "community": c.community, "access": c.access, "licence": c.licence,
                "citation": c.citation, "labels": labels, "consents": consents, "items": items, "total": total,
                "steward": steward}


def item(catalog: Catalog, viewer: Viewer, item_id: int, store=None) -> dict | None:
    """One item VIEWER may see: its metadata, labels (its own and its collection's), protocols; None otherwise.

    With STORE, a sealed collection's transcript is decrypted in memory for the page (never written anywhere)."""
    d = _dialect(catalog)
    with catalog.session() as s:
        it = s.scalar(visible_items(viewer, d).where(Item.id == item_id))
        if it is None:
            return None
        c = s.get(Collection, it.collection_id)
        labels = [_label(lab) for lab in s.scalars(select(Label).where(
            or_(Label.item_id == it.id, Label.collection_id == c.id)).order_by(Label.id))]
        prots = sorted(set(s.scalars(select(Protocol.name).join(ItemProtocol, ItemProtocol.protocol_id == Protocol.id)
                                     .where(ItemProtocol.item_id == it.id)))
                       | {str(p) for p in _meta_list((it.meta or {}).get("protocols"))})
        steward = c.community in viewer.stewards_of
        protected = bool(prots) or any(lab["key"] in PROTOCOL_LABELS for lab in labels) or bool(s.scalar(
            select(func.count()).select_from(Label).where(or_(Label.item_id == it.id, Label.collection_id == c.id),
                                                          Label.protocol_id.isnot(None))))
        return {**_item_row(it), "collection": {"id": c.id, "name": c.name, "community": c.community},
                "gender": it.gender, "media_type": it.media_type, "sample_rate": it.sample_rate,
                "access": effective_level(c.access, it.access, protected), "sharing": it.sharing, "protocols": prots,
                "labels": labels,
                "text": it.text if it.text is not None else _sealed_words(store, it),
                "content_hash": it.content_hash if steward else None, "steward": steward,
                "community_protocols": sorted(s.scalars(select(Protocol.name).where(
                    Protocol.community_id.in_(_community_ids(s, c.community))))) if steward else []}


def effective_level(collection: str | None, item: str | None, protected: bool) -> str:
    """The level an item is browsed at: the most restricted of its own and its collection's, protocol when
    protected by a protocol or a protocol label, and protocol for any level the catalog does not know."""
    ranks = [LEVELS.index(x) if x in LEVELS else len(LEVELS) - 1 for x in (collection, item or collection)]
    return "protocol" if protected else LEVELS[max(ranks)]


def _sealed_words(store, it: Item) -> str | None:
    """The transcript of an item whose words are sealed in the store (store/text.py), or None."""
    digest = (it.meta or {}).get("sealed_text")
    if store is None or not digest or it.withdrawn_at is not None:
        return None
    from hearthkit.store.text import unpack

    try:
        return unpack(store.get(digest)).get("text")
    except (OSError, ValueError, HearthError):
        return None  # missing or unreadable: the page shows no transcript rather than failing


def _meta_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _community_ids(s, name: str):
    from hearthkit.catalog.models import Community

    return select(Community.id).where(Community.name == name)


def item_for_audio(catalog: Catalog, viewer: Viewer, item_id: int) -> tuple[str, str | None] | None:
    """(content hash, media type) of an audio item VIEWER may access and that is not withdrawn; else None."""
    with catalog.session() as s:
        it = s.scalar(visible_items(viewer, _dialect(catalog)).where(Item.id == item_id, Item.kind == "audio",
                                                                     Item.withdrawn_at.is_(None)))
        return (it.content_hash, it.media_type) if it is not None else None


def search(catalog: Catalog, viewer: Viewer, query: str, offset: int, limit: int) -> tuple[list[dict], int]:
    """Items VIEWER may see whose id, speaker, dialect or text contains QUERY (case-insensitive); and their total."""
    q = query.strip()[:MAX_QUERY]
    if not q:
        return [], 0
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    match = or_(*(col.ilike(pattern, escape="\\") for col in (Item.external_id, Item.speaker, Item.dialect,
                                                               Item.text)))
    with catalog.session() as s:
        base = visible_items(viewer, _dialect(catalog)).where(match)
        total = s.scalar(select(func.count()).select_from(base.subquery()))
        rows = s.execute(base.add_columns(Collection.name).order_by(Collection.name, Item.external_id)
                         .offset(offset).limit(limit)).all()
        return [{**_item_row(it), "collection": name} for it, name in rows], total
