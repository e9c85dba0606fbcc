"""Browsing access (Mukurtu levels) as a query filter: what an actor may see is decided inside the catalog query.

Levels: open (anyone), registered (any signed-in account), community (a member, any role, of the collection's
community), protocol (inside the item's protocols). An item's level is the most restricted of its own and its
collection's. An item under any protocol (catalog or the sheet's `protocols` column), or carrying a protocol or
secret/sacred label (on itself or its collection), is at least `protocol` whatever the levels say. An unknown level
reads as `protocol`, and a protocol-level item with no protocol recorded is for its community's stewards only.
Stewards of a community see everything of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, exists, false, func, literal, not_, or_, select, true
from sqlalchemy.orm import aliased

from hearthkit.catalog.models import Collection, Item, ItemProtocol, Label, Protocol
from hearthkit.governance import vocabulary as v

LEVELS = ("open", "registered", "community", "protocol")
# Labels that put an item at protocol level: who may access it is a protocol's business.
PROTOCOL_LABELS = tuple(k for k, c in v.LABELS.items() if c in (v.STEWARD_ONLY, v.PROTOCOL))


@dataclass(frozen=True)
class Viewer:
    """Who is browsing, as the access rules see them (the web's Actor reduced to facts from the catalog)."""

    signed_in: bool = False
    communities: frozenset[str] = frozenset()  # any role
    stewards_of: frozenset[str] = frozenset()
    protocols: frozenset[str] = frozenset()  # protocol names the person is inside
    name: str | None = None


ANONYMOUS = Viewer()


def _rank(level) -> ColumnElement:
    """0..3 for the known levels; anything else (a typo, a future level) is the most restricted."""
    return case({"open": 0, "registered": 1, "community": 2}, value=level, else_=3)


def _meta_clauses(dialect: str, mine: frozenset[str]) -> tuple[ColumnElement, ColumnElement]:
    """Whether an item lists protocol names in meta, and whether the viewer is inside every one of them."""
    names = sorted(mine)  # SQLAlchemy renders an empty IN portably (matches nothing)
    if dialect == "postgresql":
        arr = Item.meta.op("->")(literal("protocols"))
        elements = func.json_array_elements_text(
            case((func.json_typeof(arr) == "array", arr), else_=func.json_build_array(arr.op("#>>")(literal("{}")))))
        has = and_(arr.isnot(None), func.json_typeof(arr) != "null",
                   case((func.json_typeof(arr) == "array", func.json_array_length(arr) > 0), else_=true()))
        el = elements.table_valued("value").alias("mp")
    else:  # SQLite: json_each walks an array, and yields a scalar as one row
        has = and_(func.json_type(Item.meta, "$.protocols").isnot(None),
                   func.json_type(Item.meta, "$.protocols") != "null",
                   or_(func.json_type(Item.meta, "$.protocols") != "array",
                       func.json_array_length(Item.meta, "$.protocols") > 0))
        el = func.json_each(Item.meta, "$.protocols").table_valued("value").alias("mp")
    all_mine = not_(exists(select(literal(1)).select_from(el).where(el.c.value.notin_(names))))
    return has, all_mine


def item_visible(viewer: Viewer, dialect: str) -> ColumnElement:
    """A WHERE clause over Item joined to Collection: true where VIEWER may see the item."""
    if viewer.stewards_of:
        steward = Collection.community.in_(list(viewer.stewards_of))
    else:
        steward = false()
    mine_ids = select(Protocol.id).where(Protocol.name.in_(sorted(viewer.protocols)))
    ip = aliased(ItemProtocol)
    has_ip = exists(select(ip.id).where(ip.item_id == Item.id))
    ip_any_ok = exists(select(ip.id).where(ip.item_id == Item.id, ip.protocol_id.in_(mine_ids)))
    ip_all_ok = not_(exists(select(ip.id).where(ip.item_id == Item.id, ip.protocol_id.notin_(mine_ids))))
    ip_ok = case((Item.sharing == "any", ip_any_ok), else_=ip_all_ok)  # anything but "any" reads as all

    lab = aliased(Label)
    on_item_or_coll = or_(lab.item_id == Item.id, lab.collection_id == Item.collection_id)
    protocol_label = exists(select(lab.id).where(on_item_or_coll, lab.key.in_(PROTOCOL_LABELS)))
    label_prot = exists(select(lab.id).where(on_item_or_coll, lab.protocol_id.isnot(None)))
    label_prot_ok = not_(exists(select(lab.id).where(on_item_or_coll, lab.protocol_id.isnot(None),
                                                     lab.protocol_id.notin_(mine_ids))))
    meta_has, meta_ok = _meta_clauses(dialect, viewer.protocols)

    level = func.max(_rank(Collection.access), _rank(func.coalesce(Item.access, Collection.access))) \
        if dialect == "sqlite" else func.greatest(_rank(Collection.access),
                                                  _rank(func.coalesce(Item.access, Collection.access)))
    protected = or_(has_ip, protocol_label, label_prot, meta_has)
    # Inside the protocols: every requirement recorded must hold, and at least one must be recorded.
    protocol_ok = and_(or_(has_ip, label_prot, meta_has), or_(not_(has_ip), ip_ok), label_prot_ok,
                       or_(not_(meta_has), meta_ok)) if viewer.signed_in else false()
    member = Collection.community.in_(list(viewer.communities)) if viewer.communities else false()
    by_level = or_(level == 0, and_(level == 1, literal(viewer.signed_in)), and_(level == 2, member))
    # Withdrawn items are their community's stewards' business only.
    others = and_(Item.withdrawn_at.is_(None),
                  or_(and_(not_(protected), by_level), and_(or_(protected, level == 3), protocol_ok)))
    return or_(steward, others)


def collection_visible(viewer: Viewer, dialect: str) -> ColumnElement:
    """A WHERE clause over Collection: its level admits VIEWER (no protocol label on it), or it holds an item they
    may see."""
    steward = Collection.community.in_(list(viewer.stewards_of)) if viewer.stewards_of else false()
    member = Collection.community.in_(list(viewer.communities)) if viewer.communities else false()
    rank = _rank(Collection.access)
    lab = aliased(Label)
    # A protocol or secret/sacred label on the collection puts the collection itself at protocol level.
    protected = exists(select(lab.id).where(lab.collection_id == Collection.id,
                                            or_(lab.key.in_(PROTOCOL_LABELS), lab.protocol_id.isnot(None))))
    by_level = and_(not_(protected),
                    or_(rank == 0, and_(rank == 1, literal(viewer.signed_in)), and_(rank == 2, member)))
    any_item = exists(select(Item.id).where(Item.collection_id == Collection.id, item_visible(viewer, dialect)))
    return or_(steward, by_level, any_item)


def visible_items(viewer: Viewer, dialect: str):
    """SELECT of the items VIEWER may see, joined to their collection."""
    return select(Item).join(Collection, Collection.id == Item.collection_id).where(item_visible(viewer, dialect))
