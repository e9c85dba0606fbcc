"""Load a published model (models/<name>/: config.json, prep/, model.safetensors) for use."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from hearthkit.errors import HearthError


def load_model_dir(folder: Path, recipe_name: str | None = None):
    """(recipe, model config, prep, model in eval mode) of the model in FOLDER; RECIPE_NAME checks its kind."""
    from hearthkit.recipes import get_recipe

    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise HearthError(f"{folder}: not a published model (no config.json); see `hearth models`")
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if recipe_name and cfg["recipe"] != recipe_name:
        raise HearthError(f"{folder.name} is a {cfg['recipe']} model, not {recipe_name}")
    recipe = get_recipe(cfg["recipe"])
    mcfg = recipe.ModelConfig.model_validate(cfg["model"])
    prep = recipe.load_prep(folder / "prep")
    model = recipe.build_model(mcfg, prep)
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    model.eval()
    return recipe, mcfg, prep, model


def resolve_model(name: str, workspace: Path | None) -> Path:
    """The folder of model NAME in the workspace (refusing withdrawn or superseded models), or NAME as a path."""
    from sqlalchemy import select

    from hearthkit.catalog.db import Catalog
    from hearthkit.catalog.models import Model
    from hearthkit.workspace import find_workspace

    as_path = Path(name)
    if (as_path / "config.json").is_file():
        return as_path
    ws = find_workspace(workspace)
    with Catalog.open(ws.db_url).session() as s:
        row = s.scalar(select(Model).where(Model.name == name))
        if row is None:
            raise HearthError(f"model {name!r} is not in this workspace; see `hearth models`")
        if row.status != "active":
            raise HearthError(f"model {name!r} is {row.status}; it may no longer be used")
        return Path(row.path)
