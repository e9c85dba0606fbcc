"""Deny-by-default policy: turn a request and the catalog into a manifest (VISION §4)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Consent, Item, Label
from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v
from hearthkit.governance.manifest import Manifest, Request


def _aware(d: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; the catalog stores UTC, so re-attach it."""
    if d is not None and d.tzinfo is None:
        return d.replace(tzinfo=UTC)
    return d


def _consent_valid(c: Consent, when: datetime) -> bool:
    """A consent counts if given by WHEN, not withdrawn by then and not expired."""
    given, withdrawn, expires = _aware(c.given_at), _aware(c.withdrawn_at), _aware(c.expires_at)
    return given <= when and (withdrawn is None or withdrawn > when) and (expires is None or expires > when)


def _in_season(data: dict, on: date) -> bool:
    """True when ON falls inside the label's season window {"from": "MM-DD", "to": "MM-DD"}."""
    try:
        start, end = data["from"], data["to"]
    except KeyError:
        return False  # a seasonal label with no window recorded is never in season: deny by default
    md = on.strftime("%m-%d")
    return start <= md <= end if start <= end else (md >= start or md <= end)


def _label_reason(lab: Label, req: Request, on: date) -> str | None:
    """Why label LAB keeps the item out of REQ's run, or None if it does not."""
    cat = v.LABELS.get(lab.key)
    if cat is None:
        return f"{lab.key}: unknown label; a steward must re-apply it with a known key"
    if cat == v.STEWARD_ONLY:
        return f"{lab.key}: {lab.community} allows training only with a steward's approval of this run"
    if cat == v.PROTOCOL and req.requester not in lab.data.get("members", []):
        return f"{lab.key}: requester {req.requester} is not inside this protocol of {lab.community}"
    if cat == v.SEASONAL and not _in_season(lab.data, on):
        return f"{lab.key}: {on.isoformat()} is outside the season window recorded with the label"
    if cat in (v.NEEDS_APPROVAL, v.MULTI_COMMUNITY):
        return f"{lab.key}: needs approval of this run by the stewards of {lab.community}"
    if cat == v.UNVERIFIED:
        return f"{lab.key}: consent is not verified; excluded unless a steward overrides"
    if cat == v.NON_COMMERCIAL and req.purpose == v.Purpose.commercial:
        return f"{lab.key}: {lab.community} does not allow commercial use"
    if cat == v.OUTREACH and req.purpose != v.Purpose.education_outreach:
        return f"{lab.key}: only for purpose education_outreach"
    if cat == v.COMMERCIAL_AGREEMENT and req.purpose == v.Purpose.commercial and not lab.data.get("agreement"):
        return f"{lab.key}: commercial use needs a recorded community agreement"
    return None


def compute_manifest(catalog: Catalog, req: Request) -> Manifest:
    """Evaluate every item of the requested collections; include only what a rule permits."""
    try:
        purpose = v.Purpose(req.purpose)
    except ValueError:
        raise HearthError(
            f"purpose {req.purpose!r} is not one of: {', '.join(p.value for p in v.Purpose)}"
        ) from None
    on = date.fromisoformat(req.as_of)
    when = datetime(on.year, on.month, on.day, 23, 59, 59, tzinfo=UTC)
    man = Manifest(request=req)
    restrictions: set[str] = set()
    attribution: set[str] = set()
    notices: set[str] = set()
    with catalog.session() as s:
        for name in sorted(req.collections):
            coll = s.scalar(select(Collection).where(Collection.name == name))
            if coll is None:
                raise HearthError(f"collection {name!r} is not in the catalog; see `hearth data ls`")
            consents = s.scalars(select(Consent).where(Consent.collection_id == coll.id)).all()
            collective = [c for c in consents if c.scope == "collective" and _consent_valid(c, when)]
            individual: dict[str, list[Consent]] = defaultdict(list)
            for c in consents:
                if c.scope == "individual" and _consent_valid(c, when):
                    individual[c.subject].append(c)
            labels_by_item: dict[int | None, list[Label]] = defaultdict(list)
            for lab in s.scalars(
                select(Label).where(
                    (Label.collection_id == coll.id)
                    | Label.item_id.in_(select(Item.id).where(Item.collection_id == coll.id))
                )
            ):
                labels_by_item[lab.item_id].append(lab)
            coll_labels = labels_by_item.get(None, [])
            collective_ok = any(purpose.value in c.purposes for c in collective)
            if coll.citation:
                attribution.add(coll.citation)
            for item in s.scalars(select(Item).where(Item.collection_id == coll.id).order_by(Item.external_id)):
                labs = coll_labels + labels_by_item.get(item.id, [])
                rule, reason = _evaluate(item, labs, collective_ok, individual, coll, req, purpose, on)
                if rule:
                    man.excluded.append(
                        {"item_id": item.id, "collection": coll.name, "external_id": item.external_id,
                         "rule": rule, "reason": reason}
                    )
                    continue
                man.included.append(
                    {"item_id": item.id, "collection": coll.name, "external_id": item.external_id,
                     "content_hash": item.content_hash, "kind": item.kind, "duration_s": item.duration_s,
                     "speaker": item.speaker, "dialect": item.dialect, "gender": item.gender,
                     "text": item.text, "meta": item.meta or {}}
                )
                for lab in labs:
                    cat = v.LABELS.get(lab.key)
                    if cat in v.INHERITED:
                        restrictions.add(lab.key)
                    elif cat == v.ATTRIBUTION:
                        attribution.add(f"{lab.community} ({lab.key})" + (f": {lab.text}" if lab.text else ""))
                    elif cat == v.NOTICE:
                        notices.add(lab.key)
    man.restrictions = sorted(restrictions)
    man.attribution = sorted(attribution)
    man.notices = sorted(notices)
    return man


def _evaluate(item, labs, collective_ok, individual, coll, req, purpose, on) -> tuple[str | None, str | None]:
    """The first rule that excludes ITEM, as (rule, reason); (None, None) if it is permitted."""
    if item.withdrawn_at is not None:
        return "withdrawn", f"withdrawn by the community on {_aware(item.withdrawn_at).date().isoformat()}"
    if not collective_ok:
        return "collective_consent", f"{coll.community} has not consented to purpose {purpose.value} for {coll.name}"
    embargo = (item.meta or {}).get("embargo_until")
    if embargo and date.fromisoformat(embargo) > on:
        return "embargo", f"under embargo until {embargo}"
    for lab in sorted(labs, key=lambda lab: lab.key):
        reason = _label_reason(lab, req, on)
        if reason:
            return lab.key, reason
    if item.speaker:
        mine = individual.get(item.speaker, [])
        if not mine:
            return "individual_consent", f"no individual consent from speaker {item.speaker}"
        if not any(purpose.value in c.purposes for c in mine):
            allowed = sorted({p for c in mine for p in c.purposes})
            return "purpose_not_consented", (
                f"speaker {item.speaker} consented to {', '.join(allowed)}, not {purpose.value}"
            )
    return None, None
