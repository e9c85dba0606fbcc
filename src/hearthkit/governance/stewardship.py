"""Steward actions on the catalog: people, protocols, labels, consent, embargo; each checked and audited."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import (
    Collection,
    Community,
    Consent,
    Declaration,
    Item,
    ItemProtocol,
    Label,
    Membership,
    Person,
    Protocol,
    ProtocolMember,
)
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance import vocabulary as v
from hearthkit.ingest.sealing import SEALING_CATEGORIES, DerivedNotSealed, seal_before_restricting
from hearthkit.store.vault import Store

ROLES = ("steward", "member", "researcher", "partner")
_MMDD = re.compile(r"^(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$")


def _community(s: Session, name: str, create: bool = False) -> Community:
    c = s.scalar(select(Community).where(Community.name == name))
    if c is None:
        known = s.scalar(select(func.count()).select_from(Collection).where(Collection.community == name))
        if not (create or known):
            raise HearthError(f"community {name!r} is unknown; it appears once a collection of it is imported "
                              "or a person is added to it with `hearth people add`")
        c = Community(name=name)
        s.add(c)
        s.flush()
    return c


def _person(s: Session, name: str, create: bool = False) -> Person:
    p = s.scalar(select(Person).where(Person.name == name))
    if p is None:
        if not create:
            raise HearthError(f"person {name!r} is unknown; add them with `hearth people add {name} --community C "
                              "--role member`")
        p = Person(name=name)
        s.add(p)
        s.flush()
    return p


def require_steward(s: Session, by: str, community: str) -> None:
    """Refuse unless BY is a steward of COMMUNITY (the one rule for every steward action)."""
    stewards = s.scalars(select(Person.name).join(Membership, Membership.person_id == Person.id)
                         .join(Community, Community.id == Membership.community_id)
                         .where(Community.name == community, Membership.role == "steward")
                         .order_by(Person.name)).all()
    if by in stewards:
        return
    if not stewards:
        raise HearthError(f"{community} has no steward yet; the workspace owner adds the first with `hearth people "
                          f"add NAME --community {community!r} --role steward --as-owner`")
    raise HearthError(f"{by} is not a steward of {community}; ask one of: {', '.join(stewards)}")


def _collection(s: Session, name: str) -> Collection:
    c = s.scalar(select(Collection).where(Collection.name == name))
    if c is None:
        raise HearthError(f"collection {name!r} is not in the catalog; see `hearth data ls`")
    return c


def _item(s: Session, coll: Collection, external_id: str) -> Item:
    it = s.scalar(select(Item).where(Item.collection_id == coll.id, Item.external_id == external_id))
    if it is None:
        raise HearthError(f"item {external_id!r} is not in collection {coll.name}")
    return it


def _protocol(s: Session, name: str) -> Protocol:
    p = s.scalar(select(Protocol).where(Protocol.name == name))
    if p is None:
        raise HearthError(f"protocol {name!r} does not exist; create it with `hearth protocol create`")
    return p


def add_person(catalog: Catalog, name: str, community: str, role: str, by: str | None = None,
               owner: str | None = None) -> None:
    """Give NAME a ROLE in COMMUNITY, granted by BY (a steward of it) or OWNER (the verified workspace owner).

    OWNER is passed only by a caller that checked it with `Workspace.require_owner`; nobody grants themselves a
    role, so a community's first steward comes from the workspace owner.
    """
    if role not in ROLES:
        raise HearthError(f"role {role!r} is not one of: {', '.join(ROLES)}")
    if by is None and owner is None:
        raise HearthError(f"adding {name} to {community} needs a steward of it (--by NAME) or the workspace owner "
                          f"(--as-owner, e.g. for the first steward: `hearth people add {name} --community "
                          f"{community!r} --role {role} --as-owner`)")
    with catalog.session() as s:
        if by is not None:
            require_steward(s, by, community)
        comm = _community(s, community, create=True)
        person = _person(s, name, create=True)
        if s.scalar(select(Membership).where(Membership.community_id == comm.id, Membership.person_id == person.id,
                                             Membership.role == role)):
            raise HearthError(f"{name} is already a {role} of {community}")
        s.add(Membership(community_id=comm.id, person_id=person.id, role=role))
        audit.append(s, "person", by if by is not None else f"owner:{owner}", person=name, community=community,
                     role=role)


def create_protocol(catalog: Catalog, name: str, community: str, by: str, description: str | None = None) -> None:
    """Create protocol NAME of COMMUNITY (a steward of it acting)."""
    with catalog.session() as s:
        require_steward(s, by, community)
        if s.scalar(select(Protocol).where(Protocol.name == name)):
            raise HearthError(f"protocol {name!r} already exists")
        s.add(Protocol(name=name, community_id=_community(s, community).id, description=description))
        audit.append(s, "protocol", by, action="create", protocol=name, community=community)


def _protocol_community(s: Session, p: Protocol) -> str:
    return s.scalar(select(Community.name).where(Community.id == p.community_id))


def add_protocol_member(catalog: Catalog, protocol: str, person: str, by: str) -> None:
    """Put PERSON inside PROTOCOL (a steward of the protocol's community acting)."""
    with catalog.session() as s:
        p = _protocol(s, protocol)
        require_steward(s, by, _protocol_community(s, p))
        who = _person(s, person)
        if s.scalar(select(ProtocolMember).where(ProtocolMember.protocol_id == p.id,
                                                 ProtocolMember.person_id == who.id)):
            raise HearthError(f"{person} is already inside protocol {protocol!r}")
        s.add(ProtocolMember(protocol_id=p.id, person_id=who.id))
        audit.append(s, "protocol", by, action="add-member", protocol=protocol, person=person)


def assign_protocol(catalog: Catalog, protocol: str, collection: str, items: list[str] | None, by: str,
                    sharing: str | None = None, store: Store | None = None) -> int:
    """Place ITEMS (default: every item) of COLLECTION under PROTOCOL; optionally set their sharing any|all.

    Protocol items never lie on disk in the clear: the collection is sealed (with STORE) before the placement is
    recorded, and when it cannot be sealed nothing is recorded (issue 19, class 6).
    """
    if sharing not in (None, "any", "all"):
        raise HearthError(f"--sharing must be any or all, not {sharing!r}")

    def targets_of(s: Session) -> tuple[Protocol, list[Item]]:
        p = _protocol(s, protocol)
        coll = _collection(s, collection)
        require_steward(s, by, coll.community)
        return p, [_item(s, coll, x) for x in items] if items else list(
            s.scalars(select(Item).where(Item.collection_id == coll.id).order_by(Item.external_id)))

    with catalog.session() as s:  # every check first: a refused placement seals nothing
        targets_of(s)
    sealed, problem = _seal(catalog, store, collection, f"placing items under protocol {protocol!r}")
    with catalog.session() as s:
        p, targets = targets_of(s)
        have = set(s.scalars(select(ItemProtocol.item_id).where(ItemProtocol.protocol_id == p.id)))
        n = 0
        for it in targets:
            if sharing:
                it.sharing = sharing
            if it.id not in have:
                s.add(ItemProtocol(item_id=it.id, protocol_id=p.id))
                n += 1
        audit.append(s, "protocol", by, action="assign", protocol=protocol, collection=collection,
                     items=[it.external_id for it in targets], sharing=sharing, sealed=list(sealed))
    if problem:
        raise HearthError(f"the items were placed under protocol {protocol!r}; but {problem}")
    return n


def apply_label(catalog: Catalog, key: str, collection: str, by: str, item: str | None = None,
                community: str | None = None, text: str | None = None, language: str | None = None,
                version: str | None = None, hub_id: str | None = None, protocol: str | None = None,
                season: str | None = None, communities: list[str] | None = None,
                agreement: str | None = None, store: Store | None = None) -> int:
    """Apply label KEY to an item (or the whole collection) on behalf of COMMUNITY; return the label id.

    A label whose category requires sealing (SEALING_CATEGORIES) seals the whole collection with STORE before it
    is recorded; when the collection cannot be sealed the label is refused and nothing changes (issue 19, class 6).
    """
    cat = v.category(key)
    start = end = None
    if season is not None:
        start, _, end = season.partition("..")
        if not (_MMDD.match(start) and _MMDD.match(end)):
            raise HearthError(f"--season {season!r}: expected MM-DD..MM-DD, e.g. 05-01..08-31")
    if cat == v.SEASONAL and season is None:
        raise HearthError(f"{key} needs its window: --season MM-DD..MM-DD")

    def checked(s: Session) -> tuple[Collection, str, Item | None, int | None]:
        coll = _collection(s, collection)
        who = community or coll.community
        require_steward(s, by, who)
        it = _item(s, coll, item) if item else None
        pid = _protocol(s, protocol).id if protocol else None
        for c in communities or []:
            _community(s, c)
        return coll, who, it, pid

    sealed = problem = None
    if cat in SEALING_CATEGORIES:
        with catalog.session() as s:  # every check first: a refused label seals nothing
            checked(s)
        counts, problem = _seal(catalog, store, collection, f"label {key}")
        sealed = list(counts)
    with catalog.session() as s:
        coll, community, it, pid = checked(s)
        lab = Label(item_id=it.id if it else None, collection_id=None if it else coll.id, key=key,
                    community=community, text=text, language=language, version=version, hub_id=hub_id,
                    protocol_id=pid, season_from=start, season_to=end, communities=communities or None,
                    agreement=agreement, data={})
        s.add(lab)
        s.flush()
        audit.append(s, "label", by, action="apply", label=lab.id, key=key, collection=collection, item=item,
                     community=community, protocol=protocol, season=season, communities=communities,
                     **({"sealed": sealed} if sealed is not None else {}))
        label_id = lab.id
    if problem:
        raise HearthError(f"label {key} was recorded (id {label_id}); but {problem}")
    return label_id


def _seal(catalog: Catalog, store: Store | None, collection: str, what: str) -> tuple[tuple[int, int], str | None]:
    """Seal COLLECTION before WHAT is recorded: (counts, None), or (counts, why) when only a derived file could not
    be sealed; the restriction is then still recorded (the most restricted reading) and the reason reported after."""
    try:
        return seal_before_restricting(catalog, store, collection, what), None
    except DerivedNotSealed as exc:
        return exc.counts, str(exc)


def remove_label(catalog: Catalog, label_id: int, by: str) -> str:
    """Remove applied label LABEL_ID (a steward of its community acting); return its key."""
    with catalog.session() as s:
        lab = s.get(Label, label_id)
        if lab is None:
            raise HearthError(f"label {label_id} does not exist; see `hearth data show`")
        require_steward(s, by, lab.community)
        key = lab.key
        s.delete(lab)
        audit.append(s, "label", by, action="remove", label=label_id, key=key, community=lab.community,
                     item=lab.item_id, collection=lab.collection_id)
        return key


def _day(d: date | None) -> datetime | None:
    return datetime(d.year, d.month, d.day, tzinfo=UTC) if d else None


def record_consent(catalog: Catalog, collection: str, scope: str, subject: str, given_by: str, given_at: date,
                   purposes: list[str], by: str, expires_at: date | None = None, evidence: str | None = None) -> int:
    """Record a collective or individual consent for COLLECTION; return its id."""
    if scope not in ("collective", "individual"):
        raise HearthError(f"--scope must be collective or individual, not {scope!r}")
    if not purposes:
        raise HearthError("name at least one --purpose; commercial is never implied")
    for p in purposes:
        if p not in v.Purpose.__members__:
            raise HearthError(f"purpose {p!r} is not one of: {', '.join(x.value for x in v.Purpose)}")
    if expires_at and expires_at <= given_at:
        raise HearthError("--expires must be after --given-at")
    with catalog.session() as s:
        coll = _collection(s, collection)
        require_steward(s, by, coll.community)
        c = Consent(collection_id=coll.id, scope=scope, subject=subject, given_by=given_by, given_at=_day(given_at),
                    purposes=sorted(purposes), expires_at=_day(expires_at), evidence=evidence)
        s.add(c)
        s.flush()
        audit.append(s, "consent", by, action="record", consent=c.id, collection=collection, scope=scope,
                     subject=subject, purposes=sorted(purposes), evidence=evidence)
        return c.id


def withdraw_consent(catalog: Catalog, consent_id: int, by: str, at: date | None = None,
                     reason: str | None = None) -> str:
    """Withdraw consent CONSENT_ID from date AT (default now); by a steward, or the person for individual consent."""
    with catalog.session() as s:
        c = s.get(Consent, consent_id)
        if c is None:
            raise HearthError(f"consent {consent_id} does not exist; see `hearth data show`")
        coll = s.get(Collection, c.collection_id)
        if c.scope == "collective" or by not in (c.subject, c.given_by):
            require_steward(s, by, coll.community)  # a person may withdraw their own consent; a community's, stewards
        if c.withdrawn_at is not None:
            raise HearthError(f"consent {consent_id} was already withdrawn on {c.withdrawn_at.date().isoformat()}")
        c.withdrawn_at = _day(at) if at else datetime.now(UTC)
        audit.append(s, "withdrawal", by, consent=consent_id, collection=coll.name, scope=c.scope,
                     subject=c.subject, at=c.withdrawn_at.isoformat(), reason=reason)
        return c.subject


def set_embargo(catalog: Catalog, collection: str, until: date | None, by: str, item: str | None = None) -> None:
    """Embargo an item (or the whole collection) until a date; None lifts it."""
    with catalog.session() as s:
        coll = _collection(s, collection)
        require_steward(s, by, coll.community)
        target = _item(s, coll, item) if item else coll
        target.embargo_until = until
        audit.append(s, "label", by, action="embargo", collection=collection, item=item,
                     until=until.isoformat() if until else None)


def declare_no_person(catalog: Catalog, collection: str, by: str, note: str, item: str | None = None) -> int:
    """Declare that no identifiable person is in an item (or every item) of COLLECTION; return the declaration id.

    A recording with no speaker recorded is used only with such a declaration (unknown is not "nobody").
    """
    if not (note or "").strip():
        raise HearthError("--note is required: say how you know nobody identifiable is in it (e.g. 'birdsong, "
                          "checked by listening')")
    with catalog.session() as s:
        coll = _collection(s, collection)
        require_steward(s, by, coll.community)
        it = _item(s, coll, item) if item else None
        d = Declaration(collection_id=coll.id, item_id=it.id if it else None, kind=v.NO_PERSON, by=by, note=note)
        s.add(d)
        s.flush()
        audit.append(s, "declaration", by, action="declare", declaration=d.id, declares=v.NO_PERSON,
                     collection=collection, item=item, note=note)
        return d.id


def revoke_declaration(catalog: Catalog, declaration_id: int, by: str) -> None:
    """Revoke declaration DECLARATION_ID from now (a steward of its collection's community acting)."""
    with catalog.session() as s:
        d = s.get(Declaration, declaration_id)
        if d is None:
            raise HearthError(f"declaration {declaration_id} does not exist; see `hearth data show`")
        coll = s.get(Collection, d.collection_id)
        require_steward(s, by, coll.community)
        if d.revoked_at is not None:
            raise HearthError(f"declaration {declaration_id} was already revoked on "
                              f"{d.revoked_at.date().isoformat()}")
        d.revoked_at = datetime.now(UTC)
        audit.append(s, "declaration", by, action="revoke", declaration=declaration_id, declares=d.kind,
                     collection=coll.name, item=d.item_id)
