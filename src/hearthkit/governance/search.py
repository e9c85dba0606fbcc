"""Who may find what in a spoken-term index: the searcher as a Viewer, and the index items they may access.

The filter runs inside the catalog query (governance/access.py), before any posterior is opened or scored, so an
item a searcher may not access contributes nothing to a search: no hit, no score, no count.
"""

from __future__ import annotations

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Community, Item, Membership, Person, Protocol, ProtocolMember
from hearthkit.governance.access import ANONYMOUS, Viewer, item_visible


def viewer_for(catalog: Catalog, name: str | None) -> Viewer:
    """The access rules' view of the person called NAME; an unknown or missing name is anonymous (the least access)."""
    if not name:
        return ANONYMOUS
    with catalog.session() as s:
        p = s.scalar(select(Person).where(Person.name == name))
        if p is None:
            return ANONYMOUS
        roles: dict[str, set[str]] = {}
        for comm, role in s.execute(select(Community.name, Membership.role)
                                    .join(Membership, Membership.community_id == Community.id)
                                    .where(Membership.person_id == p.id)):
            roles.setdefault(comm, set()).add(role)
        prots = frozenset(s.scalars(select(Protocol.name)
                                    .join(ProtocolMember, ProtocolMember.protocol_id == Protocol.id)
                                    .where(ProtocolMember.person_id == p.id)))
    return Viewer(signed_in=True, communities=frozenset(c for c, r in roles.items() if r),
                  stewards_of=frozenset(c for c, r in roles.items() if "steward" in r), protocols=prots, name=name)


def searchable(catalog: Catalog, viewer: Viewer, item_ids: list[int]) -> set[int]:
    """Those of ITEM_IDS that VIEWER may search today: never a withdrawn item (not even for its stewards, who may
    still see its record: withdrawal takes it out of every index)."""
    if not item_ids:
        return set()
    dialect = catalog.engine.dialect.name
    out: set[int] = set()
    with catalog.session() as s:
        for b in range(0, len(item_ids), 5000):  # keep IN lists within what every database accepts
            chunk = item_ids[b:b + 5000]
            out.update(s.scalars(select(Item.id).join(Collection, Collection.id == Item.collection_id)
                                 .where(Item.id.in_(chunk), Item.withdrawn_at.is_(None),
                                        item_visible(viewer, dialect))))
    return out


def spoken_search(ws, catalog: Catalog, index: str, term: str, viewer: Viewer, searcher: str | None,
                  limit: int = 20, floor: float = 0.05, via: str = "cli") -> list[dict]:
    """Hits of TERM in spoken-term INDEX among the items VIEWER may access, best first; the one search every
    surface runs (CLI `hearth search`, the web's spoken search).

    A term the index's model cannot spell is refused before anything is opened; the access filter runs before any
    posterior is read; the search is audited (`data_access`, phase `search`: the searcher, the index and its
    collection, how many items were theirs to search, how many hits, and VIA) — never the term, which may itself be
    a word a community keeps.
    """
    from hearthkit.governance import audit
    from hearthkit.recipes.kws.index import open_index
    from hearthkit.store.vault import workspace_store

    idx = open_index(ws, index)
    idx.check_sealed(catalog, workspace_store(ws))
    idx.units_of(term)
    allowed = searchable(catalog, viewer, [i.item_id for i in idx.items])
    hits = idx.search(workspace_store(ws), allowed, term, limit=limit, floor=floor) if allowed else []
    audit.record(catalog, "data_access", searcher or "anonymous", index=idx.doc["name"],
                 collection=idx.doc.get("collection"), phase="search", items=len(allowed), hits=len(hits), via=via)
    return hits


def spoken_indexes(ws, catalog: Catalog, viewer: Viewer) -> list[str]:
    """Names of the workspace's spoken-term indexes holding at least one item VIEWER may access (the others are not
    even named to them)."""
    import json

    out = []
    for path in sorted((ws.root / "indexes").glob("*/index.json")):
        try:
            ids = [int(i["item_id"]) for i in json.loads(path.read_text(encoding="utf-8"))["items"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a usable index: searching it names the problem in one line
        if searchable(catalog, viewer, ids):
            out.append(path.parent.name)
    return out
