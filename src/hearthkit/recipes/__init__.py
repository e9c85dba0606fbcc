"""Recipes: one folder each, registered by name; each turns manifest entries into a model."""

from __future__ import annotations

import importlib

from hearthkit.errors import HearthError
from hearthkit.recipes.base import Recipe

# name -> module that defines RECIPE; imported lazily so `hearth --help` stays fast.
REGISTRY = {
    "asr": "hearthkit.recipes.asr.recipe",
    "mt": "hearthkit.recipes.mt.recipe",
    "lm": "hearthkit.recipes.lm.recipe",
    "change": "hearthkit.recipes.change.recipe",
    "landcover": "hearthkit.recipes.landcover.recipe",
    "st": "hearthkit.recipes.st.recipe",
}


def get_recipe(name: str) -> Recipe:
    """The recipe registered as NAME."""
    if name not in REGISTRY:
        raise HearthError(f"recipe {name!r} is unknown; choose one of: {', '.join(sorted(REGISTRY))}")
    return importlib.import_module(REGISTRY[name]).RECIPE
