"""Retrain a model after a withdrawal: same request, recipe and config, a fresh manifest; supersede the old."""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model, Run
from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError
from hearthkit.lineage.registry import get_model, successor
from hearthkit.workspace import Workspace


def retrain_config(catalog: Catalog, name: str) -> RunConfig:
    """The config of model NAME's run with a new name, today's policy date and an updated parent."""
    with catalog.session() as s:
        old = get_model(s, name)
        if old.status not in ("needs-retrain", "active"):
            raise HearthError(f"model {name} is {old.status}; retrain its successor instead")
        cfg = RunConfig.model_validate(s.get(Run, old.run_id).config)
        if cfg.init_from:
            parent = get_model(s, cfg.init_from)
            nxt = successor(s, parent)
            if parent.status == "needs-retrain" and nxt is None:
                raise HearthError(f"its parent {parent.name} needs retraining first: `hearth retrain {parent.name}`")
            if nxt is not None:
                cfg.init_from = nxt.name
        base = re.sub(r"-r\d+$", "", name)
        k = 1
        taken = set(s.scalars(select(Model.name)))
        while f"{base}-r{k}" in taken:
            k += 1
    cfg.name = f"{base}-r{k}"
    cfg.request.as_of = None  # evaluate consent today, not when the old model was planned
    return cfg


def supersede(catalog: Catalog, old_name: str, new_name: str) -> None:
    """Register NEW as superseding OLD and revoke OLD."""
    with catalog.session() as s:
        old, new = get_model(s, old_name), get_model(s, new_name)
        old.status = "revoked"
        old.superseded_by_id = new.id
        old.status_reason = f"superseded by {new.name} (retrained without withdrawn items)"


def retrain(ws: Workspace, catalog: Catalog, name: str, say: Callable[[str], None],
            on_line: Callable[[str], None]):
    """Retrain model NAME without withdrawn items; return the new run's result."""
    from hearthkit.launch.pipeline import train_pipeline

    cfg = retrain_config(catalog, name)
    result = train_pipeline(ws, catalog, cfg, say, on_line)
    supersede(catalog, name, cfg.name)
    return cfg.name, result
