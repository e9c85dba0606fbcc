"""Deny-by-default policy: turn a request and the catalog into a manifest (VISION §4).

Every item of the requested collections is evaluated against every rule. Rules that no approval can lift
(consent, purpose, embargo, season, protocol membership) are checked first; the first that fails excludes the
item with its reason. If only approval rules remain (secret/sacred, culturally sensitive, non-verified,
multiple communities), the item is *held*: excluded with the reason and the communities whose stewards must
approve, until `Request.approved` names them all. The catalog is read with a few bulk queries per collection
(no ORM objects per item), so a million items stay within seconds.
"""

from __future__ import annotations

import gc
import json
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import NamedTuple

from sqlalchemy import Text, select, type_coerce
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import (
    Collection,
    Consent,
    Declaration,
    Item,
    ItemProtocol,
    Label,
    Person,
    Protocol,
    ProtocolMember,
)
from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v
from hearthkit.governance.manifest import Manifest, Request

# Categories whose rule a steward's approval of the run lifts (VISION §4: approve / override).
APPROVAL = {v.STEWARD_ONLY, v.NEEDS_APPROVAL, v.UNVERIFIED, v.MULTI_COMMUNITY}
# Item kinds that record people: with no speaker recorded, someone unknown may be in them (rule unknown_speaker).
RECORDINGS = frozenset({"audio", "video"})


class LabelView(NamedTuple):
    """The fields of an applied label that the rules read."""

    key: str
    community: str
    text: str | None
    protocol_id: int | None
    season_from: str | None
    season_to: str | None
    communities: tuple[str, ...]
    agreement: str | None


@dataclass(frozen=True)
class Context:
    """What every rule may consult: the request, its purpose and date, and the requester's protocols."""

    req: Request
    purpose: v.Purpose
    on: date
    approved: frozenset[str]
    my_protocols: frozenset[int]
    protocol_names: dict[int, str]
    protocol_ids: dict[str, int]  # by name: the import sheet's `protocols` column names protocols


def _aware(d: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; the catalog stores UTC, so re-attach it."""
    if d is not None and d.tzinfo is None:
        return d.replace(tzinfo=UTC)
    return d


def consent_state(c: Consent, when: datetime) -> str | None:
    """None if consent record C is in force at WHEN, else why not (not yet given, withdrawn, expired)."""
    given, withdrawn, expires = _aware(c.given_at), _aware(c.withdrawn_at), _aware(c.expires_at)
    if given > when:
        return f"given only on {given.date().isoformat()}"
    if withdrawn is not None and withdrawn <= when:
        return f"withdrawn on {withdrawn.date().isoformat()}"
    if expires is not None and expires <= when:
        return f"expired on {expires.date().isoformat()}"
    return None


def _consent_check(records: list[Consent], who: str, purpose: v.Purpose, when: datetime,
                   missing_rule: str, purpose_rule: str) -> tuple[str, str] | None:
    """(rule, reason) when RECORDS do not give consent for PURPOSE at WHEN; None when they do."""
    if not records:
        return missing_rule, f"no consent recorded from {who}"
    valid = [c for c in records if consent_state(c, when) is None]
    if not valid:
        states = sorted({consent_state(c, when) for c in records})
        return missing_rule, f"consent of {who} is not in force ({'; '.join(states)})"
    if any(purpose.value in c.purposes for c in valid):
        return None
    allowed = sorted({p for c in valid for p in c.purposes})
    return purpose_rule, f"{who} consented to {', '.join(allowed) or 'no purpose'}, not {purpose.value}"


def in_season(start: str | None, end: str | None, on: date) -> bool:
    """True when ON falls inside the window START..END ("MM-DD", inclusive, may wrap the new year)."""
    if not start or not end:
        return False  # a seasonal label with no window recorded is never in season: deny by default
    md = on.strftime("%m-%d")
    return start <= md <= end if start <= end else (md >= start or md <= end)


def _label_rule(lab: LabelView, ctx: Context, item_protocols: tuple[int, ...]) -> tuple[str, frozenset | None] | None:
    """Why LAB keeps the item out: (reason, communities whose approval lifts it, or None if nothing can)."""
    cat = v.LABELS.get(lab.key)
    if cat is None:
        return f"{lab.key or '(empty key)'}: unknown label; a steward must re-apply it with a known key", None
    if cat == v.NON_COMMERCIAL and ctx.purpose == v.Purpose.commercial:
        return f"{lab.key}: {lab.community} does not allow commercial use", None
    if cat == v.OUTREACH and ctx.purpose != v.Purpose.education_outreach:
        return f"{lab.key}: {lab.community} allows only purpose education_outreach", None
    if cat == v.COMMERCIAL_AGREEMENT and ctx.purpose == v.Purpose.commercial and not lab.agreement:
        return f"{lab.key}: commercial use needs a recorded agreement with {lab.community}", None
    if cat == v.PROTOCOL:
        if lab.protocol_id is not None:
            if lab.protocol_id not in ctx.my_protocols:
                name = ctx.protocol_names.get(lab.protocol_id, str(lab.protocol_id))
                return (f"{lab.key}: requester {ctx.req.requester} is not inside protocol {name!r} "
                        f"of {lab.community}"), None
        elif not item_protocols:
            return (f"{lab.key}: no protocol of {lab.community} is recorded for this label or item; "
                    "a steward must place the item under one"), None
        # otherwise the item's own protocols decide membership (the `protocol` rule)
    if cat == v.SEASONAL and not in_season(lab.season_from, lab.season_to, ctx.on):
        window = f"{lab.season_from}..{lab.season_to}" if lab.season_from else "no window recorded"
        return f"{lab.key}: {ctx.on.isoformat()} is outside the season ({window}) {lab.community} recorded", None
    if cat == v.STEWARD_ONLY:
        return f"{lab.key}: {lab.community} allows training only with a steward's approval of this run", \
            frozenset({lab.community})
    if cat == v.NEEDS_APPROVAL:
        return f"{lab.key}: needs approval of this run by the stewards of {lab.community}", frozenset({lab.community})
    if cat == v.UNVERIFIED:
        return f"{lab.key}: not verified; excluded unless a steward of {lab.community} overrides (approves this run)", \
            frozenset({lab.community})
    if cat == v.MULTI_COMMUNITY:
        every = frozenset({lab.community, *lab.communities})
        return f"{lab.key}: needs approval from every community: {', '.join(sorted(every))}", every
    return None


def _protocol_rule(protocols: tuple[int, ...], sharing: str, ctx: Context, missing: tuple[str, ...] = ()) -> str | None:
    """Why the requester may not use an item under PROTOCOLS (sharing all|any), or None.

    MISSING are protocol names the import sheet placed the item under that the catalog does not hold: nobody can
    be inside a protocol that does not exist, so the item stays out whatever its sharing (deny by default).
    """
    if missing:
        return (f"the import sheet places this item under protocol {', '.join(repr(n) for n in missing)}, which "
                "does not exist; a steward must create it (`hearth protocol create`) and add its members")
    mine = [p for p in protocols if p in ctx.my_protocols]
    names = ", ".join(repr(ctx.protocol_names[p]) for p in sorted(protocols, key=ctx.protocol_names.get))
    if sharing == "any":
        if not mine:
            return f"requester {ctx.req.requester} is in none of the item's protocols ({names}; sharing any)"
    elif len(mine) < len(protocols):
        return f"requester {ctx.req.requester} is not in every protocol of the item ({names}; sharing all)"
    return None


def evaluate_item(speaker: str | None, until: date | None, sharing: str, labs: list[LabelView],
                  protocols: tuple[int, ...], coll_state, ctx: Context,
                  individual: dict[str, tuple[str, str] | None], kind: str | None = None, declared: bool = False,
                  missing: tuple[str, ...] = ()) -> tuple[str | None, str | None, frozenset | None]:
    """(rule, reason, held_for) for one item: held_for names the communities whose approval would include it.

    KIND and DECLARED: a recording with no speaker recorded needs a steward's declaration that no identifiable
    person is in it. MISSING: protocol names from the import sheet that the catalog does not hold.
    """
    coll_rule, coll_embargo, unknown_reason = coll_state
    if coll_rule:
        return coll_rule[0], coll_rule[1], None
    for day in (coll_embargo, until):
        if day is not None and day > ctx.on:
            return "embargo", f"under embargo until {day.isoformat()}", None
    if speaker:
        ind = individual.get(speaker)
        if ind:
            return ind[0], ind[1], None
    elif kind in RECORDINGS and not declared:
        return "unknown_speaker", unknown_reason, None
    held: list[tuple[str, str, frozenset]] = []
    for lab in labs:
        found = _label_rule(lab, ctx, protocols)
        if found is None:
            continue
        reason, lift = found
        if lift is None:
            return lab.key or "unknown_label", reason, None  # an empty key is still a rule that excludes
        if not lift <= ctx.approved:
            held.append((lab.key or "unknown_label", reason, lift - ctx.approved))
    if protocols or missing:
        reason = _protocol_rule(protocols, sharing or "all", ctx, missing)
        if reason:
            return "protocol", reason, None
    if held:
        key, reason, _ = held[0]
        return key, reason + " (held for approval)", frozenset().union(*(h[2] for h in held))
    return None, None, None


def _context(s: Session, req: Request) -> Context:
    """Validate the request and gather what the rules consult about the requester."""
    try:
        purpose = v.Purpose(req.purpose)
    except ValueError:
        raise HearthError(
            f"purpose {req.purpose!r} is not one of: {', '.join(p.value for p in v.Purpose)}"
        ) from None
    try:
        on = date.fromisoformat(req.as_of)
    except ValueError:
        raise HearthError(f"as_of {req.as_of!r} is not an ISO date (YYYY-MM-DD)") from None
    names = dict(s.execute(select(Protocol.id, Protocol.name)).all())
    mine = s.scalars(select(ProtocolMember.protocol_id).join(Person, Person.id == ProtocolMember.person_id)
                     .where(Person.name == req.requester)).all()
    return Context(req, purpose, on, frozenset(req.approved), frozenset(mine), names,
                   {n: i for i, n in names.items()})


_LABEL_COLS = (Label.item_id, Label.key, Label.community, Label.text, Label.protocol_id, Label.season_from,
               Label.season_to, Label.communities, Label.agreement)


def _view(r) -> LabelView:
    return LabelView(r.key, r.community, r.text, r.protocol_id, r.season_from, r.season_to,
                     tuple(r.communities or ()), r.agreement)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic GC: a million new long-lived entry dicts would trigger full passes over all of them
    again and again (3x the whole computation); they hold no reference cycles, so refcounting frees them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def compute_manifest(catalog: Catalog, req: Request, only_item: str | None = None) -> Manifest:
    """Evaluate every item of the requested collections (or only ONLY_ITEM); include only what a rule permits."""
    with catalog.session() as s:
        return manifest_in_session(s, req, only_item)


def manifest_in_session(s: Session, req: Request, only_item: str | None = None) -> Manifest:
    """compute_manifest inside an open session (so a request can be stored in the same transaction)."""
    with _no_cyclic_gc():
        return _manifest(s, req, only_item)


def _manifest(s: Session, req: Request, only_item: str | None) -> Manifest:
    """The evaluation itself: bulk-read each collection's facts, then sweep its items in order."""
    man = Manifest(request=req)
    restrictions: set[str] = set()
    attribution: set[str] = set()
    notices: set[str] = set()
    needed: set[str] = set()
    ctx = _context(s, req)
    when = datetime(ctx.on.year, ctx.on.month, ctx.on.day, 23, 59, 59, tzinfo=UTC)
    for name in sorted(req.collections):
        coll = s.scalar(select(Collection).where(Collection.name == name))
        if coll is None:
            raise HearthError(f"collection {name!r} is not in the catalog; see `hearth data ls`")
        consents = s.scalars(select(Consent).where(Consent.collection_id == coll.id).order_by(Consent.id)).all()
        collective = [c for c in consents if c.scope == "collective"]
        coll_rule = _consent_check(collective, f"{coll.community} (collective, for {coll.name})", ctx.purpose,
                                   when, "collective_consent", "collective_consent")
        by_speaker: dict[str, list[Consent]] = defaultdict(list)
        for c in consents:
            if c.scope == "individual":
                by_speaker[c.subject].append(c)
        individual = _individual_cache(s, coll.id, by_speaker, ctx.purpose, when)
        conn = s.connection()
        coll_labels = [_view(r) for r in conn.execute(
            select(*_LABEL_COLS).where(Label.collection_id == coll.id, Label.item_id.is_(None))
            .order_by(Label.key, Label.id))]
        item_labels: dict[int, list[LabelView]] = defaultdict(list)
        for r in conn.execute(select(*_LABEL_COLS).join(Item, Item.id == Label.item_id)
                           .where(Item.collection_id == coll.id).order_by(Label.key, Label.id)):
            item_labels[r.item_id].append(_view(r))
        item_protocols: dict[int, tuple[int, ...]] = defaultdict(tuple)
        for iid, pid in conn.execute(select(ItemProtocol.item_id, ItemProtocol.protocol_id)
                                  .join(Item, Item.id == ItemProtocol.item_id)
                                  .where(Item.collection_id == coll.id).order_by(ItemProtocol.protocol_id)):
            item_protocols[iid] += (pid,)
        if coll.citation:
            attribution.add(coll.citation)
        coll_declared, declared_items = _declarations(s, coll.id, when)
        unknown = (f"a recording with no speaker recorded: someone unknown may be in it; a steward of "
                   f"{coll.community} must record its speaker and their consent, or declare that no identifiable "
                   f"person is in it (`hearth consent declare-no-person {coll.name} --item ID --by STEWARD`)")
        coll_state = (coll_rule, coll.embargo_until, unknown)
        # Core, not ORM, and meta/embargo as the driver returns them: per-row type processing would
        # dominate at a million items; _sweep decodes the few that need it.
        q = (select(Item.id, Item.external_id, Item.content_hash, Item.kind, Item.duration_s, Item.speaker,
                    Item.dialect, Item.gender, Item.text, type_coerce(Item.meta, Text),
                    type_coerce(Item.embargo_until, Text), Item.sharing, type_coerce(Item.withdrawn_at, Text))
             .where(Item.collection_id == coll.id).order_by(Item.external_id))
        rows = raw_rows(conn, q if only_item is None else q.where(Item.external_id == only_item))
        _sweep(rows, coll.name, coll_labels, item_labels, item_protocols, coll_state, ctx, individual, man,
               restrictions, attribution, notices, needed, coll_declared, declared_items)
    man.restrictions = sorted(restrictions)
    man.attribution = sorted(attribution)
    man.notices = sorted(notices)
    man.approvals_needed = sorted(needed)
    return man


def _individual_cache(s: Session, coll_id: int, by_speaker: dict[str, list[Consent]], purpose: v.Purpose,
                      when: datetime) -> dict[str, tuple[str, str] | None]:
    """Per speaker of the collection: (rule, reason) when individual consent fails, else None."""
    speakers = s.scalars(select(Item.speaker).where(Item.collection_id == coll_id, Item.speaker.is_not(None))
                         .distinct()).all()
    return {sp: _consent_check(by_speaker.get(sp, []), f"speaker {sp}", purpose, when, "individual_consent",
                               "purpose_not_consented") for sp in speakers}


def declaration_in_force(d: Declaration, when: datetime) -> bool:
    """True when declaration D was made by WHEN and not revoked by then."""
    revoked = _aware(d.revoked_at)
    return _aware(d.at) <= when and (revoked is None or revoked > when)


def _declarations(s: Session, coll_id: int, when: datetime) -> tuple[bool, frozenset[int]]:
    """No-identifiable-person declarations in force at WHEN: (for the whole collection?, item ids)."""
    found = [d for d in s.scalars(select(Declaration).where(Declaration.collection_id == coll_id,
                                                            Declaration.kind == v.NO_PERSON))
             if declaration_in_force(d, when)]
    return any(d.item_id is None for d in found), frozenset(d.item_id for d in found if d.item_id is not None)


def _meta_protocols(meta, ctx: Context) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """The protocols the import sheet placed an item under (meta["protocols"], by name): (ids, unknown names).

    A value that is not a list of names cannot be read exactly, so it stands for a protocol nobody is in.
    """
    names = meta.get("protocols") if isinstance(meta, dict) else None
    if names is None:
        return (), ()
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        return (), (f"{names!r} (unreadable)",)
    found = tuple(ctx.protocol_ids[n] for n in names if n in ctx.protocol_ids)
    return found, tuple(n for n in names if n not in ctx.protocol_ids)


def raw_rows(conn, query, size: int = 20_000):
    """Plain driver tuples of QUERY, fetched in chunks: no SQLAlchemy Row or type processing per row.

    The statement is compiled by SQLAlchemy for the connection's dialect with its (integer / escaped) bind
    values inlined, then run on the DBAPI cursor: at a million items the Row layer alone costs seconds.
    """
    sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cur = conn.connection.dbapi_connection.cursor()
    try:
        cur.execute(sql)
        while chunk := cur.fetchmany(size):
            yield from chunk
    finally:
        cur.close()


def _sweep(rows, coll_name, coll_labels, item_labels, item_protocols, coll_state, ctx, individual, man,
           restrictions, attribution, notices, needed, coll_declared: bool = False,
           declared_items: frozenset[int] = frozenset()) -> None:
    """Evaluate each item row in order, appending to the manifest's included or excluded list."""
    excluded, append = man.excluded, man.included.append
    plain_ok = coll_state[0] is None and coll_state[1] is None and not coll_labels
    special = item_labels.keys() | item_protocols.keys()  # items with labels or protocols of their own
    ok_speakers = {sp for sp, fail in individual.items() if fail is None and sp}
    if coll_declared:  # the whole collection is declared free of identifiable people
        ok_speakers |= {None, ""}
    for iid, ext, digest, kind, dur, speaker, dialect, gender, text, meta, until, sharing, withdrawn in rows:
        # Fast path, the common case in a large archive: nothing on this item can exclude it. A recording with
        # no speaker and no declaration, and an item the import sheet placed under protocols, never take it
        # ("protocols" in meta: a key of PostgreSQL's dict, a substring of SQLite's text; a false hit only costs
        # the slow path; cheaper per row than a LIKE query).
        if not (plain_ok and until is None and (speaker in ok_speakers or (not speaker and kind not in RECORDINGS))
                and iid not in special and withdrawn is None and (not meta or "protocols" not in meta)):
            labs = sorted(coll_labels + item_labels.get(iid, []), key=lambda lab: lab.key)
            prots = item_protocols.get(iid, ())
            missing: tuple[str, ...] = ()
            if meta and "protocols" in meta:
                if meta.__class__ is not dict:
                    meta = _decode(meta)
                named, missing = _meta_protocols(meta, ctx)
                prots = tuple(sorted(set(prots) | set(named)))
            if until is not None and not isinstance(until, date):
                until = date.fromisoformat(until)  # SQLite hands dates back as ISO text
            rule, reason, held = evaluate_item(speaker, until, sharing, labs, prots, coll_state, ctx, individual,
                                               kind, coll_declared or iid in declared_items, missing)
            if rule is not None:
                entry = {"item_id": iid, "collection": coll_name, "external_id": ext,
                         "rule": rule, "reason": reason}
                if held:
                    entry["needs_approval"] = sorted(held)
                    needed.update(held)
                excluded.append(entry)
                continue
            if withdrawn is not None:  # the item itself was withdrawn (bytes erased); the consent rules said why not
                excluded.append({"item_id": iid, "collection": coll_name, "external_id": ext, "rule": "withdrawn",
                                 "reason": f"withdrawn by the community on {str(withdrawn)[:10]}"})
                continue
            if labs or prots:
                _inherit(labs, prots, ctx, restrictions, attribution, notices)
        if meta.__class__ is not dict:  # text from SQLite; PostgreSQL's driver decodes JSON itself
            meta = json.loads(meta) if meta and meta != "{}" else {}
        append({"item_id": iid, "collection": coll_name, "external_id": ext, "content_hash": digest, "kind": kind,
                "duration_s": dur, "speaker": speaker, "dialect": dialect, "gender": gender, "text": text,
                "meta": meta})


def _decode(meta: str) -> dict:
    """An item's meta as SQLite returns it (JSON text); anything but an object reads as unreadable protocols."""
    try:
        found = json.loads(meta)
    except ValueError:
        found = None
    return found if isinstance(found, dict) else {"protocols": meta}


def _inherit(labs: list[LabelView], prots: tuple[int, ...], ctx: Context, restrictions: set[str],
             attribution: set[str], notices: set[str]) -> None:
    """What a model trained on an included item inherits: restrictions, attribution, notices."""
    protocol_bound = bool(prots)
    for lab in labs:
        cat = v.LABELS.get(lab.key)
        if cat in v.INHERITED:
            restrictions.add(lab.key)
        if cat in (v.PROTOCOL, v.STEWARD_ONLY):
            protocol_bound = True
            if lab.protocol_id is not None:
                restrictions.add(f"protocol:{ctx.protocol_names[lab.protocol_id]}")
        elif cat == v.ATTRIBUTION:
            attribution.add(f"{lab.community} ({lab.key})" + (f": {lab.text}" if lab.text else ""))
        elif cat == v.NOTICE:
            notices.add(lab.key)
    if protocol_bound:
        # The model is restricted to the same protocols as its data (VISION §4 protocol rows).
        restrictions.update(f"protocol:{ctx.protocol_names[p]}" for p in prots)
