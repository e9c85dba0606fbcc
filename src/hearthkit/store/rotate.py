"""Re-encrypting a collection under a fresh data key (key rotation with --reencrypt)."""

from __future__ import annotations

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item
from hearthkit.ingest.sealing import derived_objects
from hearthkit.store.text import objects_of
from hearthkit.store.vault import Store


def reencrypt_collection(catalog: Catalog, store: Store, collection: str, community: str) -> int:
    """Seal every object of COLLECTION under a new data key, then retire the old keys; returns objects rewritten."""
    live = [r for r in store.keys.records() if r["collection"] == collection and not r.get("retired")]
    # More than one live key means an earlier re-encryption was interrupted: finish it with its newest key.
    target = max(live, key=lambda r: r["created_at"]) if len(live) > 1 else store.keys.new_data_key(collection,
                                                                                                     community)
    with catalog.session() as s:
        rows = s.execute(select(Item.content_hash, Item.meta).join(Collection).where(Collection.name == collection))
        digests = sorted({d for h, meta in rows for d in objects_of(h, meta)}  # recordings and sealed words
                         | derived_objects(catalog, store, collection))  # and what indexes and runs derived
    n = sum(store.sealed.reseal(d, collection, community) for d in digests if store.sealed.has(d))
    for r in store.keys.records():
        if r["collection"] == collection and r["key_id"] != target["key_id"] and not r.get("retired"):
            store.keys.retire(bytes.fromhex(r["key_id"]))
    return n
