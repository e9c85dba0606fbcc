"""Training requests and steward approvals, bound to the hash of the manifest the stewards saw."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, date

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AccessRequest, Approval, Community, Membership, Person
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.manifest import Manifest, Request
from hearthkit.governance.policy import compute_manifest, manifest_in_session

READ_ONLY = "as_of is for reproducing an old manifest read-only (`hearth plan`); training is judged today"


@dataclass(frozen=True)
class StoredRequest:
    """A request as stored: its fields, the manifest hash to approve, who must approve, and its status."""

    id: int
    purpose: str
    requester: str
    collections: tuple[str, ...]
    recipe: str
    as_of: str
    manifest_hash: str
    needs: tuple[str, ...]
    status: str
    approved: tuple[str, ...]
    decisions: tuple[tuple[str, str, str], ...]  # (community, steward, decision)
    made_on: str = ""  # ISO date (local, like date.today()) the request was stored

    @property
    def backdated(self) -> bool:
        """True when the request evaluates policy at a date before the day it was made (read-only, never trained)."""
        return bool(self.made_on) and self.as_of < self.made_on

    def policy_request(self) -> Request:
        """The policy request with the approvals recorded so far."""
        return Request(self.purpose, self.requester, self.collections, self.as_of, self.approved, self.id)


def _load(s: Session, request_id: int) -> tuple[AccessRequest, StoredRequest]:
    row = s.get(AccessRequest, request_id)
    if row is None:
        raise HearthError(f"request {request_id} does not exist; see the id `hearth request` printed")
    decisions = s.execute(select(Approval.community, Approval.steward, Approval.decision)
                          .where(Approval.request_id == request_id).order_by(Approval.community)).all()
    approved = tuple(sorted(c for c, _, d in decisions if d == "approve"))
    return row, StoredRequest(row.id, row.purpose, row.requester, tuple(row.collections), row.recipe, row.as_of,
                              row.manifest_hash, tuple(row.needs), row.status, approved,
                              tuple((c, st, d) for c, st, d in decisions), _made_on(row))


def _made_on(row: AccessRequest) -> str:
    """The local day ROW was stored, as `date.today()` (which `hearth request` and training use) saw it."""
    at = row.created_at
    if at is None:
        return ""
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at).astimezone().date().isoformat()


def _backdated_refusal(req: StoredRequest) -> str:
    return (f"request {req.id} evaluates policy as of {req.as_of}, before the day it was made ({req.made_on}): "
            f"{READ_ONLY}; make a new request without --as-of")


def get_request(catalog: Catalog, request_id: int) -> StoredRequest:
    """The stored request REQUEST_ID, or a one-line error."""
    with catalog.session() as s:
        return _load(s, request_id)[1]


def create_request(catalog: Catalog, purpose: str, requester: str, collections: list[str], recipe: str,
                   as_of: str) -> tuple[StoredRequest, Manifest]:
    """Store a request; return it and its manifest as it stands now (held items excluded until approved)."""
    with catalog.session() as s:
        base = Request(purpose, requester, tuple(sorted(collections)), as_of)
        now = manifest_in_session(s, base)
        needs = now.approvals_needed
        row = AccessRequest(purpose=purpose, requester=requester, collections=list(base.collections),
                            recipe=recipe, as_of=as_of, manifest_hash="", needs=needs,
                            status="pending" if needs else "not_required")
        s.add(row)
        s.flush()
        # The hash stewards approve: the manifest once every needed community has approved.
        full = manifest_in_session(s, Request(purpose, requester, base.collections, as_of, tuple(needs), row.id))
        row.manifest_hash = full.hash
        audit.append(s, "request", requester, request=row.id, purpose=purpose, collections=list(base.collections),
                     recipe=recipe, as_of=as_of, manifest=full.hash, needs=needs, included=len(now.included),
                     held=sum(1 for e in now.excluded if "needs_approval" in e))
        stored = _load(s, row.id)[1]
    return stored, compute_manifest(catalog, stored.policy_request())


def _stewarded(s: Session, person: str) -> set[str]:
    """Communities in which PERSON is a steward."""
    return set(s.scalars(select(Community.name).join(Membership, Membership.community_id == Community.id)
                         .join(Person, Person.id == Membership.person_id)
                         .where(Person.name == person, Membership.role == "steward")))


def decide(catalog: Catalog, request_id: int, steward: str, decision: str, community: str | None = None,
           note: str | None = None, seen_hash: str | None = None) -> StoredRequest:
    """Record STEWARD's approve/deny of REQUEST_ID for each community they steward that it needs.

    SEEN_HASH, when given, is the manifest hash the steward reviewed: a decision on anything else is refused.
    """
    with catalog.session() as s:
        row, req = _load(s, request_id)
        if seen_hash is not None and seen_hash != req.manifest_hash:
            raise HearthError(f"request {request_id} is for manifest {req.manifest_hash[:12]}…, not {seen_hash[:12]}…; "
                              "review the request's manifest before deciding")
        if req.status == "not_required":
            raise HearthError(f"request {request_id} needs no approval: no item in it requires a steward")
        if req.status in ("approved", "denied"):
            raise HearthError(f"request {request_id} is already {req.status}; make a new request to change it")
        if decision == "approve" and req.backdated:
            raise HearthError(f"approval refused: {_backdated_refusal(req)}")
        decided = {c for c, _, _ in req.decisions}
        mine = _stewarded(s, steward) & set(req.needs)
        if community is not None:
            if community not in req.needs:
                raise HearthError(f"request {request_id} needs no approval from {community}; "
                                  f"it needs: {', '.join(req.needs)}")
            mine &= {community}
        todo = sorted(mine - decided)
        if not todo:
            who = ", ".join(c for c in req.needs if c not in decided) or "nobody"
            raise HearthError(f"{steward} is not a steward of a community whose decision request {request_id} "
                              f"still needs (waiting for: {who})")
        # Bound to the hash: stewards decide on exactly the manifest that was requested.
        full = manifest_in_session(s, Request(req.purpose, req.requester, req.collections, req.as_of,
                                              req.needs, req.id))
        if full.hash != req.manifest_hash:
            raise HearthError(f"request {request_id}: the catalog changed since it was made (manifest "
                              f"{full.hash[:12]} ≠ {req.manifest_hash[:12]}); make a new request")
        today = date.today().isoformat()
        if decision == "approve" and today != req.as_of and manifest_in_session(
                s, replace(full.request, as_of=today)).use() != full.use():
            # What is approved is what a run would read; training judges today (issue 19, class 3).
            raise HearthError(f"request {request_id}: judged today ({today}) it permits other data than on "
                              f"{req.as_of} (consent expired, a season closed, an embargo…); make a new request")
        for c in todo:
            s.add(Approval(request_id=request_id, community=c, steward=steward, decision=decision,
                           manifest_hash=full.hash, note=note))
        if decision == "deny":
            row.status = "denied"
        elif set(req.needs) <= decided | set(todo):
            row.status = "approved"
        s.flush()
        audit.append(s, "approval" if decision == "approve" else "denial", steward, request=request_id,
                     communities=todo, manifest=full.hash, note=note, status=row.status)
        return _load(s, request_id)[1]


def authorise(catalog: Catalog, request_id: int, purpose: str, requester: str, collections: list[str],
              recipe: str) -> tuple[Request, str]:
    """The policy request and approved hash a training run may use, or a one-line refusal."""
    req = get_request(catalog, request_id)
    for field, mine, theirs in (("purpose", purpose, req.purpose), ("requester", requester, req.requester),
                                ("collections", sorted(collections), list(req.collections)),
                                ("recipe", recipe, req.recipe)):
        if mine != theirs:
            raise HearthError(f"training refused: the config's {field} {mine!r} differs from request "
                              f"{request_id}'s {theirs!r}")
    if req.backdated:
        raise HearthError(f"training refused: {_backdated_refusal(req)}")
    if req.status == "denied":
        who = ", ".join(f"{st} of {c}" for c, st, d in req.decisions if d == "deny")
        raise HearthError(f"training refused: request {request_id} was denied by {who}")
    if req.status == "pending":
        waiting = ", ".join(c for c in req.needs if c not in req.approved)
        raise HearthError(f"training refused: request {request_id} awaits approval by the stewards of {waiting}")
    return req.policy_request(), req.manifest_hash
