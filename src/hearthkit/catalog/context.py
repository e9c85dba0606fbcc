"""Which workspace a catalog was opened for: its key folder keeps what must live outside the database."""

from __future__ import annotations

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from sqlalchemy.engine import Engine

from hearthkit.catalog.db import Catalog

if TYPE_CHECKING:
    from hearthkit.workspace import Workspace

# Keyed by engine, so a session (which knows only its bind) finds the workspace too: the audit head anchor is
# written after the commit of any session in any module, without changing how sessions are opened.
_BOUND: WeakKeyDictionary[Engine, Workspace] = WeakKeyDictionary()


def bind(catalog: Catalog, ws: Workspace) -> Catalog:
    """Tie CATALOG to workspace WS (its key folder anchors the audit log, verifies model folders); return it."""
    _BOUND[catalog.engine] = ws
    return catalog


def open_workspace_catalog(ws: Workspace, create: bool = False) -> Catalog:
    """Open WS's catalog, bound to WS: every command that acts for a workspace opens it this way."""
    return bind(Catalog.open(ws.db_url, create=create), ws)


def workspace_of(target: Catalog | Engine | None) -> Workspace | None:
    """The workspace a catalog (or its engine) was bound to, or None (a bare catalog, e.g. in a library test)."""
    if target is None:
        return None
    engine = target.engine if isinstance(target, Catalog) else target
    return _BOUND.get(engine)
