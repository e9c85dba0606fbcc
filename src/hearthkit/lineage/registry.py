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


def _parent_ids(s: Session, model: Model) -> list[int]:
    """MODEL's parents: the one it initialised from, then further ones (an st decoder's mt model, …)."""
    from hearthkit.catalog.models import ModelParent

    ids = [model.parent_id] if model.parent_id is not None else []
    return ids + [p for p in s.scalars(select(ModelParent.parent_id).where(ModelParent.model_id == model.id)
                                       .order_by(ModelParent.role)) if p not in ids]


def ancestors(s: Session, model: Model) -> list[Model]:
    """Parents, grandparents, … of MODEL over every parent edge, nearest first (a cycle stops the walk)."""
    chain, seen, frontier = [], {model.id}, [model]
    while frontier:
        nxt = []
        for m in frontier:
            for pid in _parent_ids(s, m):
                if pid not in seen and (p := s.get(Model, pid)) is not None:
                    seen.add(pid)
                    chain.append(p)
                    nxt.append(p)
        frontier = nxt
    return chain


def children(s: Session, ids) -> list[tuple[Model, int]]:
    """Models with a parent among IDS over any parent edge, each with the parent id it was reached by."""
    from hearthkit.catalog.models import ModelParent

    out = [(m, m.parent_id) for m in s.scalars(select(Model).where(Model.parent_id.in_(ids)))]
    return out + [(s.get(Model, e.model_id), e.parent_id)
                  for e in s.scalars(select(ModelParent).where(ModelParent.parent_id.in_(ids)))]


def descendants(s: Session, model: Model) -> list[Model]:
    """Every model built on MODEL over any parent edge (transfer, or a further parent such as decoder_from)."""
    found, frontier = {model.id: model}, [model.id]
    while frontier:
        new = {m.id: m for m, _via in children(s, frontier) if m.id not in found}
        found.update(new)
        frontier = list(new)
    del found[model.id]
    return sorted(found.values(), key=lambda m: m.name)


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
