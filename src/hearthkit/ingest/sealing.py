"""Which collections are stored encrypted, and sealing a collection that was stored in the clear."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item, Label
from hearthkit.governance.vocabulary import LABELS, PROTOCOL, STEWARD_ONLY
from hearthkit.store.vault import Store

# Labels that say who may access an item: their items never lie on disk in the clear.
SEALING_CATEGORIES = {STEWARD_ONLY, PROTOCOL}


def must_seal(restricted: bool, labels: Iterable[str], protocols: Iterable[str] = ()) -> bool:
    """True when a collection is restricted, or any item carries a protocol label or sits under a protocol."""
    return restricted or any(LABELS.get(k) in SEALING_CATEGORIES for k in labels) or any(True for _ in protocols)


def collection_must_seal(s, coll: Collection) -> bool:
    """Whether COLLECTION, as the catalog holds it now, must be stored encrypted."""
    keys = s.scalars(select(Label.key).outerjoin(Item, Label.item_id == Item.id)
                     .where(or_(Item.collection_id == coll.id, Label.collection_id == coll.id)).distinct()).all()
    protocols = (p for m in s.scalars(select(Item.meta).where(Item.collection_id == coll.id)) for p in
                 (m or {}).get("protocols", []))
    return must_seal(bool(coll.restricted), keys, protocols)


def seal_collection(catalog: Catalog, store: Store, name: str) -> int:
    """Encrypt every object of collection NAME still stored in the clear, then delete the clear copy."""
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == name))
        if coll is None:
            return 0
        community = coll.community
        digests = sorted(set(s.scalars(select(Item.content_hash).where(Item.collection_id == coll.id))))
    n = 0
    for digest in digests:
        if not store.plain.has(digest):
            continue
        # Seal first, delete second: a crash in between leaves both copies, never neither.
        if not store.sealed.has(digest):
            store.sealed.put(store.plain.get(digest), name, community, digest=digest)
        store.plain.delete(digest)
        n += 1
    return n
