"""Revoke a model outright: a steward of a community whose data it learned from says it must not be used."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import update
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.stewardship import require_steward
from hearthkit.lineage.graph import communities_of
from hearthkit.lineage.registry import get_model


@dataclass
class Revocation:
    """What a revocation did: the model, whose data it was, and the descendants now needing retraining."""

    model: str
    communities: list[str]
    descendants: list[str] = field(default_factory=list)


def _descendants(s: Session, model: Model) -> list[Model]:
    """Every model built on MODEL, over every parent edge (lineage/registry.py)."""
    from hearthkit.lineage.registry import descendants

    return descendants(s, model)


def require_revoker(s: Session, model: Model, by: str) -> list[str]:
    """Refuse unless BY stewards a community whose data MODEL (or a parent) learned from; return them."""
    communities = sorted(communities_of(s, model))
    if not communities:
        # No recorded data means no community is known to speak for it: nobody may revoke it here (nor use it).
        raise HearthError(f"model {model.name} has no recorded training data, so no community steward can revoke "
                          "it; the workspace owner removes its folder instead")
    errors = []
    for c in communities:
        try:
            require_steward(s, by, c)
            return communities
        except HearthError as e:
            errors.append(str(e))
    raise HearthError(f"{by} is not a steward of a community whose data {model.name} learned from "
                      f"({', '.join(communities)}): {errors[0]}")


def revoke_model(catalog: Catalog, name: str, by: str, reason: str) -> Revocation:
    """Revoke model NAME for REASON, mark its descendants needs-retrain, audit it, all in one transaction."""
    reason = (reason or "").strip()
    if not reason:
        raise HearthError("revoking a model needs a reason (--reason): the community and the audit log read it")
    with catalog.session() as s:
        m = get_model(s, name)
        communities = require_revoker(s, m, by)
        if m.status in ("revoked", "superseded"):
            raise HearthError(f"model {name} is already {m.status}: {m.status_reason or 'no reason recorded'}")
        m.status = "revoked"
        m.status_reason = f"revoked by {by}: {reason}"
        kids = _descendants(s, m)
        names = [k.name for k in kids]
        if names:
            # Same marking as a withdrawal's impact: only active descendants change; revoked ones stay revoked.
            s.execute(update(Model).where(Model.name.in_(names), Model.status == "active")
                      .values(status="needs-retrain", status_reason=f"its parent {name} was revoked: {reason}"))
        audit.append(s, "revocation", by, model=name, communities=communities, reason=reason,
                     descendants=names)
    return Revocation(name, communities, names)
