"""The model registry: lookups, inheritance from parents, status changes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hearthkit.catalog.models import Model
from hearthkit.errors import HearthError


def get_model(s: Session, name: str) -> Model:
    """The registered model NAME, or a one-line error."""
    m = s.scalar(select(Model).where(Model.name == name))
    if m is None:
        raise HearthError(f"no model named {name!r}; see `hearth models ls`")
    return m


def ancestors(s: Session, model: Model) -> list[Model]:
    """Parent, grandparent, … of MODEL (nearest first)."""
    chain, seen = [], {model.id}
    while model.parent_id is not None and model.parent_id not in seen:
        model = s.get(Model, model.parent_id)
        seen.add(model.id)
        chain.append(model)
    return chain


def successor(s: Session, model: Model) -> Model | None:
    """The newest model that supersedes MODEL, following the chain."""
    cur = model
    while cur.superseded_by_id is not None:
        cur = s.get(Model, cur.superseded_by_id)
    return cur if cur is not model else None


def guard(s: Session, name: str, purpose: str, requester: str | None = None) -> Model:
    """The model NAME if PURPOSE is allowed for it, else a one-line error saying why not."""
    from hearthkit.lineage.guard import check_use

    m = get_model(s, name)
    nxt = successor(s, m)
    check_use(m.name, m.status, m.restrictions or [], purpose, requester, lambda who: memberships(s, who),
              successor=nxt.name if nxt else None)
    from hearthkit.lineage.base import check_model_base

    check_model_base(s, m)  # issue 20: a base missing or changed on disk refuses every use of its models
    return m


def memberships(s: Session, person: str) -> set[str]:
    """Names of the protocols PERSON is a member of."""
    from hearthkit.catalog.models import Person, Protocol, ProtocolMember

    return set(s.scalars(select(Protocol.name).join(ProtocolMember, ProtocolMember.protocol_id == Protocol.id)
                         .join(Person, Person.id == ProtocolMember.person_id).where(Person.name == person)))
