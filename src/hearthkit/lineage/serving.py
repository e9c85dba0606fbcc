"""Serving a model (transcribe, translate, generate, monitor): one check before, one audit event after.

The CLI and the web app call the same two functions. `authorize_use` applies the model guard (status, inherited
restrictions, the actor's protocols) and records a refusal as a `serve_refused` event with its reason, so stewards
see attempts too; `record_use` appends one `serve` event per successful use, with counts, never the content.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model
from hearthkit.errors import HearthError
from hearthkit.governance import audit

ACTIONS = {"transcribe": "asr", "translate": "mt", "generate": "lm", "monitor": "change"}  # action -> recipe


def _refused(catalog: Catalog, model: str, action: str, actor: str | None, purpose: str, exc: Exception) -> None:
    audit.record(catalog, "serve_refused", actor, model=model, action=action, purpose=purpose, reason=str(exc))


def _check_action(action: str, recipe: str | None, name: str) -> None:
    if action not in ACTIONS:
        raise HearthError(f"unknown use {action!r}: choose one of {', '.join(ACTIONS)}")
    if recipe and recipe != ACTIONS[action]:
        raise HearthError(f"model {name} is a {recipe} model; {action} needs a {ACTIONS[action]} model")


def authorize_use(catalog: Catalog, model: str, action: str, actor: str, purpose: str) -> Model:
    """The registered model MODEL if ACTOR may use it for ACTION with PURPOSE; else a one-line HearthError."""
    from hearthkit.lineage.registry import guard

    try:
        with catalog.session() as s:
            m = guard(s, model, purpose, actor)  # status, inherited restrictions, protocols of the actor
            _check_action(action, m.recipe, m.name)
            return m
    except HearthError as exc:
        _refused(catalog, model, action, actor, purpose, exc)
        raise


def record_use(catalog: Catalog, model: str, action: str, actor: str, purpose: str, **data) -> None:
    """Append one `serve` event: who used MODEL for ACTION and PURPOSE, with counts (seconds, lines, tiles)."""
    if action not in ACTIONS:
        raise HearthError(f"unknown use {action!r}: choose one of {', '.join(ACTIONS)}")
    audit.record(catalog, "serve", actor, model=model, action=action, purpose=purpose, **data)


@dataclass(frozen=True)
class Served:
    """A model resolved for one use: the name the audit log records, its folder, what governs it."""

    name: str
    folder: Path
    restrictions: list[str]
    source: str  # registered | signed | external


def resolve_use(catalog: Catalog, ref: str, action: str, actor: str | None, purpose: str) -> Served:
    """REF (a registered model name, an external model's name, or a model folder) checked for this use.

    A folder must be a registered model of this workspace, carry a restrictions.json signed with this workspace's
    key over its very weights, or have been registered by a steward (lineage/folder.py); refusals are audited.
    """
    from sqlalchemy import select

    from hearthkit.catalog.context import workspace_of
    from hearthkit.catalog.models import ExternalModel
    from hearthkit.lineage.folder import authorize_folder

    as_path = Path(ref)
    is_folder = (as_path / "config.json").is_file()
    if not is_folder:
        with catalog.session() as s:
            registered = s.scalar(select(Model.path).where(Model.name == ref))
            ext = s.scalar(select(ExternalModel.path).where(ExternalModel.name == ref))
        if registered is not None:
            m = authorize_use(catalog, ref, action, actor, purpose)
            return Served(m.name, Path(m.path), list(m.restrictions or []), "registered")
    try:
        with catalog.session() as s:
            if not is_folder:
                if ext is None:
                    raise HearthError(f"model {ref!r} is not in this workspace; see `hearth models`")
                as_path = Path(ext)
            fm = authorize_folder(s, workspace_of(catalog), as_path, purpose, actor)
            _check_action(action, fm.recipe, fm.name)
            return Served(fm.name, fm.folder, fm.restrictions, fm.source)
    except HearthError as exc:
        _refused(catalog, ref, action, actor, purpose, exc)
        raise
