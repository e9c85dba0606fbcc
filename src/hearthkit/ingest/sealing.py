"""Which collections are stored encrypted, and sealing a collection that was stored in the clear."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from sqlalchemy import or_, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item, ItemProtocol, Label
from hearthkit.errors import HearthError
from hearthkit.governance.vocabulary import LABELS, PROTOCOL, STEWARD_ONLY
from hearthkit.store.text import SEALED_TEXT, has_words, pack, unpack
from hearthkit.store.vault import Store

if TYPE_CHECKING:
    from hearthkit.workspace import Workspace

# Labels that say who may access an item: their items never lie on disk in the clear.
SEALING_CATEGORIES = {STEWARD_ONLY, PROTOCOL}


def must_seal(restricted: bool, labels: Iterable[str], protocols: Iterable[str] = ()) -> bool:
    """True when a collection is restricted, or any item carries a protocol label or sits under a protocol."""
    return restricted or any(LABELS.get(k) in SEALING_CATEGORIES for k in labels) or any(True for _ in protocols)


def collection_must_seal(s, coll: Collection) -> bool:
    """Whether COLLECTION, as the catalog holds it now, must be stored encrypted."""
    keys = s.scalars(select(Label.key).outerjoin(Item, Label.item_id == Item.id)
                     .where(or_(Item.collection_id == coll.id, Label.collection_id == coll.id)).distinct()).all()
    protocols = [p for m in s.scalars(select(Item.meta).where(Item.collection_id == coll.id)) for p in
                 (m or {}).get("protocols", [])]
    # Items a steward placed under a protocol (`hearth protocol assign`) are protocol items too.
    protocols += [str(p) for p in s.scalars(select(ItemProtocol.protocol_id).join(Item, ItemProtocol.item_id == Item.id)
                                            .where(Item.collection_id == coll.id).limit(1))]
    return must_seal(bool(coll.restricted), keys, protocols)


def set_item_words(item: Item, text: str | None, meta: dict, store: Store,
                   seal_for: tuple[str, str] | None) -> None:
    """Give ITEM its TEXT and META: on the row, or with the words in a sealed object when SEAL_FOR is set."""
    if seal_for is None:
        item.text, item.meta = text, meta
        return
    data, rest = pack(f"{seal_for[0]}/{item.external_id}", text, meta)
    item.text, item.meta = None, {**rest, SEALED_TEXT: store.put(data, seal_for)}


def item_words(store: Store, item: Item) -> tuple[str | None, dict]:
    """ITEM's text and its full meta (private entries included), opening its sealed text object if it has one."""
    meta = dict(item.meta or {})
    digest = meta.pop(SEALED_TEXT, None)
    if digest is None:
        return item.text, meta
    words = unpack(store.get(digest))
    words.pop("item")
    return words.pop("text"), {**meta, **words}


class DerivedNotSealed(HearthError):
    """The collection's objects and words are sealed, but a derived file could not be read to seal what it copied.

    A restriction that asked for the sealing must still be recorded (the most restricted reading): callers record
    it, then report this."""

    def __init__(self, message: str, counts: tuple[int, int]):
        super().__init__(message)
        self.counts = counts


def seal_collection(catalog: Catalog, store: Store, name: str) -> tuple[int, int]:
    """Encrypt every object of collection NAME still stored in the clear, then delete the clear copy; move the
    words its catalog rows hold in the clear (transcripts, translations) into sealed text objects; seal what the
    workspace derived from it (spoken-term indexes, the words in run manifests).
    Returns (objects encrypted, run manifests sealed included; items whose words were sealed)."""
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == name))
        if coll is None:
            return 0, 0
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
    texts = 0
    with catalog.session() as s:  # the sealed text objects are written before the rows forget the words
        for item in s.scalars(select(Item).where(Item.collection_id == coll.id)):
            if has_words(item.text, item.meta):
                set_item_words(item, item.text, dict(item.meta or {}), store, (name, community))
                texts += 1
    if texts:
        catalog.scrub()  # no copy of the old rows may stay in free pages or the write-ahead log
    ws = workspace_for(catalog, store)
    if ws is not None and (ws.root / "indexes").is_dir():  # derived data (spoken-term indexes) is sealed with it
        from hearthkit.recipes.kws.index import seal_indexes

        n += seal_indexes(store, ws.root / "indexes", name, community)
    if ws is not None and ws.runs_dir.is_dir():  # so are the words run manifests copied while it was open
        from hearthkit.governance.sealed_manifest import seal_run_manifests

        unreadable: list = []
        n += seal_run_manifests(store, ws.runs_dir, name, community, unreadable)
        if unreadable:  # everything else is sealed; these may still hold the collection's words in the clear
            files = ", ".join(str(p.relative_to(ws.root)) if p.is_relative_to(ws.root) else str(p) for p in unreadable)
            raise DerivedNotSealed(f"collection {name} was sealed, but {files} cannot be parsed as a run manifest, "
                                   "so words of the collection may remain in it in the clear; a steward repairs or "
                                   "deletes it, then runs the command again (or `hearth keys seal`)", (n, texts))
    return n, texts


def workspace_for(catalog: Catalog, store: Store) -> Workspace | None:
    """The workspace whose derived data (indexes/, runs/) sealing STORE's collections must reach: the one CATALOG was
    opened for (catalog/context.py), else the one STORE's folder lies in; None when neither holds STORE.

    An index this cannot find stays in the clear, and a search refuses it in one line while its collection is sealed
    (recipes/kws/index.py SpokenIndex.check_sealed); a run manifest it cannot find keeps its words.
    """
    from hearthkit.catalog.context import workspace_of
    from hearthkit.workspace import open_workspace

    ws = workspace_of(catalog)
    if ws is None or ws.store_dir.resolve() != store.root.resolve():
        try:
            ws = open_workspace(store.root.parent)
        except HearthError:
            return None
    return ws if ws.store_dir.resolve() == store.root.resolve() else None


def derived_objects(catalog: Catalog, store: Store, name: str) -> set[str]:
    """The sealed objects the workspace derived from collection NAME: its spoken-term indexes' objects and kept
    manifests, and the words of run manifests (what re-encrypting the collection must reach besides its items)."""
    import json

    from hearthkit.governance.sealed_manifest import sealed_word_objects

    ws = workspace_for(catalog, store)
    if ws is None:
        return set()
    out = sealed_word_objects(ws.runs_dir, name) if ws.runs_dir.is_dir() else set()
    for path in sorted((ws.root / "indexes").glob("*/index.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("collection") == name:
                out |= {str(i["obj"]) for i in doc["items"]}
                out |= {str(doc["manifest_object"])} if doc.get("manifest_object") else set()
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a usable index: searching it says so
    return out


def seal_before_restricting(catalog: Catalog, store: Store | None, name: str, what: str) -> tuple[int, int]:
    """Seal collection NAME now, before WHAT (a label or protocol that requires sealing) is recorded on it.

    Raises HearthError naming the reason when it cannot be sealed (no store given, the community key cannot be
    made); the caller then records nothing. Returns (objects encrypted, items whose words were sealed).
    """
    if store is None:
        raise HearthError(f"{what} requires collection {name!r} to be stored encrypted, and no store was given to "
                          "seal it; nothing was changed (callers pass store=workspace_store(ws))")
    with catalog.session() as s:
        community = s.scalar(select(Collection.community).where(Collection.name == name))
    try:
        # The data key (and the community key behind it) first: when it cannot be made, nothing is changed.
        store.keys.data_key_for(name, community)
        return seal_collection(catalog, store, name)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise HearthError(f"{what} was not recorded: collection {name!r} could not be sealed: "
                          f"{exc.strerror or exc}{where}; fix the key folder or the store and try again") from None
