"""Which community a run draws on, and so which account, QoS or queue its cluster job is charged to."""

from __future__ import annotations

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection
from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError


def communities(catalog: Catalog, cfg: RunConfig) -> list[str]:
    """Communities holding the collections the run requests (sorted, unique)."""
    with catalog.session() as s:
        found = s.scalars(select(Collection.community).where(Collection.name.in_(cfg.request.collections))).all()
    return sorted(set(found))


def pick(per_community: dict[str, str], names: list[str], explicit: str | None, option: str) -> str | None:
    """EXPLICIT if given, else the one value the workspace config maps these communities to, else None."""
    if explicit:
        return explicit
    values = {per_community[c] for c in names if c in per_community}
    if len(values) > 1:
        listed = ", ".join(f"{c} -> {per_community[c]}" for c in names if c in per_community)
        raise HearthError(f"the run draws on several communities with different {option} values ({listed}); "
                          f"pass {option} to choose one")
    return values.pop() if values else None
