"""Commented starter run configs and JSON schemas, written from the pydantic models so they cannot drift."""

from __future__ import annotations

import textwrap
from typing import Any

import yaml
from pydantic import BaseModel

from hearthkit.engine.config import RunConfig, model_schema

# What a new user must fill in (fields without a default), and the few defaults a recipe's data needs changed;
# everything else is the schema's own default. Geo items have no text: whole scenes are held out; a translation
# pair's two sides share meta.pair, so a pair is never split across training and test.
_REQUEST = {"requester": "my-name", "collections": ["my-collection"]}
_PURPOSE = {"asr": "language_revitalization", "lm": "language_revitalization", "mt": "language_revitalization",
            "change": "community_use", "landcover": "community_use"}
_SPLIT_BY = {"asr": "text", "lm": "text", "mt": "pair", "change": "scene", "landcover": "scene"}
_HINT = {"mt": "# Set model.pairs to your collection's directions (SRC-TGT, e.g. es-nah) too."}
_WIDTH = 100


def starter_config(recipe: str) -> str:
    """A run config for RECIPE as commented YAML: every field, with its description, at its default value."""
    schema = model_schema(recipe, "hearth new")
    values = {"name": f"my-{recipe}", "recipe": recipe, "request": {"purpose": _PURPOSE[recipe], **_REQUEST},
              "split": {"by": _SPLIT_BY[recipe]}}
    lines = [f"# A run of the {recipe} recipe: every setting with its description, at its default. Set name and",
             "# request (purpose, requester, collections: see `hearth data ls`), then see what the request may use:",
             "# `hearth plan THIS.yaml`.",
             *([_HINT[recipe]] if recipe in _HINT else []),
             f"# JSON schema: `hearth schema run --recipe {recipe}`."]
    lines += _fields(RunConfig, values, 0, {"model": schema})
    return "\n".join(lines) + "\n"


def _fields(model: type[BaseModel], values: dict, indent: int, sections: dict[str, type[BaseModel]]) -> list[str]:
    """YAML lines for MODEL's fields: a comment with the description, then the value (VALUES first, else default)."""
    pad = " " * indent
    out: list[str] = []
    for name, info in model.model_fields.items():
        if info.description:
            out += _comment(info.description, pad)
        sub = sections.get(name) or _model_of(info.annotation)
        if sub is not None:
            doc = (sub.__doc__ or "").strip().splitlines()
            if doc and (name in sections or not info.description):
                out += _comment(doc[0], pad)
            out.append(f"{pad}{name}:")
            out += _fields(sub, values.get(name) or {}, indent + 2, {})
            continue
        if name in values:
            value = values[name]
        elif info.is_required():
            raise AssertionError(f"starter config: no value for required field {name}")  # a new required field
        else:
            value = info.get_default(call_default_factory=True)
        out.append(f"{pad}{name}: {_scalar(value)}")
    return out


def _comment(text: str, pad: str) -> list[str]:
    """TEXT as YAML comment lines indented by PAD (words whole: `re-made` stays on one line)."""
    return [pad + "# " + line for line in textwrap.wrap(text, _WIDTH - len(pad) - 2, break_on_hyphens=False)]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model a field holds, if it is one."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _scalar(value: Any) -> str:
    """VALUE as one line of YAML (flow style for lists)."""
    if isinstance(value, tuple):
        value = list(value)
    if hasattr(value, "isoformat"):
        value = value.isoformat()
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip().removesuffix(
        "\n...").removesuffix("...").strip()


def run_schema(recipe: str | None = None) -> dict:
    """JSON schema of a run config: its `model:` section is checked against RECIPE's schema, or (no RECIPE) against
    the schema of whichever recipe the config names."""
    from hearthkit.recipes import REGISTRY

    schema = RunConfig.model_json_schema()
    defs = schema.setdefault("$defs", {})
    names = [recipe] if recipe is not None else sorted(REGISTRY)
    rules = []
    for name in names:
        # Each recipe's nested models under its own prefix: asr and lm both have an LMConfig.
        model = model_schema(name, "hearth schema").model_json_schema(ref_template=f"#/$defs/{name}.{{model}}")
        defs.update({f"{name}.{k}": v for k, v in model.pop("$defs", {}).items()})
        defs[f"{name}.model"] = model
        rules.append({"if": {"properties": {"recipe": {"const": name}}},
                      "then": {"properties": {"model": {"$ref": f"#/$defs/{name}.model"}}}})
    schema["properties"]["recipe"] = {**schema["properties"]["recipe"], "enum": names}
    schema["allOf"] = rules
    if recipe is not None:
        schema["title"] = f"RunConfig ({recipe})"
    return schema
