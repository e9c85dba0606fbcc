"""Load a published model (models/<name>/: config.json, prep/, model.safetensors) for use."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from hearthkit.engine.config import field_error
from hearthkit.errors import HearthError


@dataclass
class LoadedModel:
    """A published model ready for inference: its name, recipe, model config, preparation and weights."""

    name: str
    recipe: object
    cfg: object
    prep: dict
    model: nn.Module


def open_model(folder: Path, recipe_name: str | None = None) -> LoadedModel:
    """`load_model_dir` as a LoadedModel named as its config says."""
    recipe, mcfg, prep, model = load_model_dir(folder, recipe_name)
    name = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("name") or Path(folder).name
    return LoadedModel(name, recipe, mcfg, prep, model)


def load_model_dir(folder: Path, recipe_name: str | None = None):
    """(recipe, model config, prep, model in eval mode) of the model in FOLDER; RECIPE_NAME checks its kind."""
    from hearthkit.recipes import get_recipe

    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise HearthError(f"{folder}: not a published model (no config.json); see `hearth models`")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        kind, section = cfg["recipe"], cfg["model"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise HearthError(f"{cfg_path}: not a hearthkit model config (JSON with `recipe` and `model`)") from None
    if recipe_name and kind != recipe_name:
        raise HearthError(f"{folder.name} is a {kind} model, not {recipe_name}")
    recipe = get_recipe(kind)
    try:
        mcfg = recipe.ModelConfig.model_validate(section)
    except ValidationError as exc:
        raise HearthError(f"{cfg_path}: {field_error(exc, 'model.', recipe.ModelConfig)}") from None
    prep = recipe.load_prep(folder / "prep")
    model = recipe.build_model(mcfg, prep)
    try:
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
    except (OSError, RuntimeError, SafetensorError) as exc:  # missing or corrupt file, or weights of another shape
        raise HearthError(f"{folder}/model.safetensors: does not hold this model's weights "
                          f"({str(exc).strip().splitlines()[0][:200]})") from None
    model.eval()
    return recipe, mcfg, prep, model


def resolve_model(name: str, workspace: Path | None, purpose: str | None = None,
                  requester: str | None = None) -> Path:
    """The folder of model NAME (a workspace model name, or a folder with config.json), checked for this use.

    A model registered in the workspace must be active; with PURPOSE, its inherited restrictions and protocols
    must allow that use by REQUESTER too (`lineage.registry.guard`). With PURPOSE, any other folder must carry a
    restrictions.json signed by this workspace or be registered by a steward (`lineage.folder`), else it is
    refused. Without PURPOSE (a component such as a fusion lm, not a use of its own) an outside folder passes.
    """
    from sqlalchemy import select

    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.catalog.models import Model
    from hearthkit.lineage.folder import authorize_folder
    from hearthkit.lineage.registry import guard
    from hearthkit.workspace import find_workspace

    as_path = Path(name)
    is_folder = (as_path / "config.json").is_file()
    try:
        ws = find_workspace(workspace)
    except HearthError:
        if is_folder and purpose is None:
            return as_path
        if is_folder:  # no key folder to verify its restrictions with, no registry to look it up in
            raise HearthError(f"{as_path}: a model folder is used only inside a workspace, which checks the "
                              "restrictions it carries; pass --workspace DIR") from None
        raise
    catalog = open_workspace_catalog(ws)
    try:
        with catalog.session() as s:
            if is_folder and purpose is not None:
                authorize_folder(s, ws, as_path, purpose, requester)
                return as_path
            if is_folder:
                where = as_path.resolve()
                row = next((m for m in s.scalars(select(Model).where(Model.name == where.name))
                            if Path(m.path).resolve() == where), None)
                if row is None:
                    return as_path
            else:
                row = s.scalar(select(Model).where(Model.name == name))
                if row is None:
                    raise HearthError(f"model {name!r} is not in this workspace; see `hearth models`")
            if purpose is not None:
                guard(s, row.name, purpose, requester)  # status, inherited restrictions, protocol membership
            elif row.status != "active":
                raise HearthError(f"model {row.name!r} is {row.status}; it may no longer be used")
            return as_path if is_folder else Path(row.path)
    finally:
        catalog.close()
