"""Export a published model: weights (safetensors), card, config, preparation and signed restrictions, to a folder.

A recipe whose models are Hugging Face models (fine-tuned from a registered base, `model.base`) provides the hook

    def export_hf(self, folder: Path, out: Path) -> None:
        # Write into OUT, from the published model FOLDER, what `transformers` loads with `from_pretrained`:
        # its config.json, model.safetensors (LoRA adapters merged in) and tokenizer/processor files.

(`recipes/hf.py export_hf(module, out, extra_files)` does the writing once the recipe has rebuilt its module).
The export is then that folder, loadable as is, with README.md (the card, `library_name: transformers`),
LICENSE.md (the inherited terms) and restrictions.json (signed over its weights) beside it, and hearthkit's own
config, evaluation and preparation under `hearthkit/`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model
from hearthkit.errors import HearthError
from hearthkit.lineage.card import LICENSE_LINK


def export_model(catalog: Catalog, name: str, dest: Path, purpose: str | None = None,
                 requester: str | None = None) -> tuple[Path, list[str]]:
    """Copy model NAME into DEST for PURPOSE (default: its run's) by REQUESTER; refuse what its lineage forbids."""
    from hearthkit.catalog.context import workspace_of
    from hearthkit.catalog.models import Run
    from hearthkit.governance import audit
    from hearthkit.lineage.folder import write_restrictions
    from hearthkit.lineage.registry import ancestors, guard

    with catalog.session() as s:
        model = s.scalar(select(Model).where(Model.name == name))
        if model is None:
            known = ", ".join(s.scalars(select(Model.name).order_by(Model.name))) or "none yet"
            raise HearthError(f"no model named {name!r} (models: {known})")
        run = s.get(Run, model.run_id)
        purpose, requester = purpose or run.purpose, requester or run.requester
        guard(s, name, purpose, requester)  # status, inherited restrictions, protocols
        src, restrictions = Path(model.path), list(model.restrictions)
        attribution, recipe, manifest_hash = list(model.attribution or []), model.recipe, model.manifest_hash
        lineage = [{"model": m.name, "recipe": m.recipe, "manifest_sha256": m.manifest_hash,
                    "restrictions": list(m.restrictions or [])} for m in ancestors(s, model)]
        base = run.base  # issue 20: the pretrained base, if any (guard above checked it is intact)
    ws = workspace_of(catalog)
    if ws is None:
        raise HearthError("export signs the model's restrictions with the workspace's key; open the catalog with "
                          "its workspace (hearthkit.catalog.context.open_workspace_catalog)")
    for needed in ("model.safetensors", "model_card.md"):
        if not (src / needed).is_file():
            raise HearthError(f"{src / needed}: missing; re-run `hearth train` for {name!r} to publish it again")
    dest = dest.resolve()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise HearthError(f"{dest}: already exists and is not empty; name a new folder")
    # Build beside the destination, then rename: an interrupted export leaves no half-written folder.
    tmp = dest.parent / f".tmp-export-{dest.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        hf = _export_hf(recipe, base, src, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written is left behind
        raise
    own = tmp / "hearthkit" if hf else tmp  # an HF folder's config.json is transformers'; ours goes beside it
    own.mkdir(exist_ok=True)
    if not hf:
        shutil.copy2(src / "model.safetensors", tmp / "model.safetensors")
    card = (src / "model_card.md").read_text(encoding="utf-8")
    (tmp / "README.md").write_text(_library(card, "transformers") if hf else card, encoding="utf-8")
    (tmp / LICENSE_LINK).write_text(licence_text(name, restrictions, attribution, base), encoding="utf-8")
    for extra in ("config.json", "evaluation.json"):
        if (src / extra).is_file():
            shutil.copy2(src / extra, own / extra)
    if (src / "prep").is_dir():
        shutil.copytree(src / "prep", own / "prep")
    # The restrictions travel inside the folder, machine-readable and signed over the copied weights: whoever
    # uses this folder as a parent or serves it gets them enforced (lineage/folder.py), whatever README.md says.
    write_restrictions(tmp, ws, name, recipe, restrictions, attribution, lineage, manifest_hash)
    if dest.exists():
        dest.rmdir()
    tmp.replace(dest)
    audit.record(catalog, "export", requester, model=name, purpose=purpose, to=str(dest),
                 **({"format": "transformers", "base": base["name"]} if hf else {}))
    return dest, restrictions


def _export_hf(recipe_name: str | None, base: dict | None, src: Path, out: Path) -> bool:
    """Let the recipe write model SRC as a transformers folder into OUT when it is HF-based; whether it did."""
    if not base or not recipe_name:
        return False
    from hearthkit.recipes import get_recipe

    recipe = get_recipe(recipe_name)
    hook = getattr(recipe, "export_hf", None)
    if hook is None:
        return False
    from hearthkit.lineage.base import set_offline_env

    set_offline_env()
    hook(src, out)
    if not (out / "config.json").is_file() or not any(out.glob("*.safetensors")):
        raise HearthError(f"{recipe_name}.export_hf wrote no config.json and safetensors weights for {src.name}; "
                          "report this as a bug")
    return True


def _library(card: str, library: str) -> str:
    """CARD with its front matter's library_name set to LIBRARY."""
    import yaml

    if not card.startswith("---"):
        return card
    _, front, body = card.split("---", 2)
    meta = yaml.safe_load(front) or {}
    meta["library_name"] = library
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---" + body


def licence_text(name: str, restrictions: list[str], attribution: list[str], base: dict | None) -> str:
    """LICENSE.md of an exported model: the terms it inherited (the card's `license: other`)."""
    lines = [f"# Terms of use of {name}", "",
             "This model was trained by hearthkit under the authority of the communities whose data it learned "
             "from. It carries these restrictions, inherited from its training data"
             + (" and its base model" if base else "") + "; they bind every use and every derived model:", ""]
    lines += [f"- `{r}`" for r in restrictions] or ["- none recorded"]
    if any(r.endswith("non_commercial") or r == "bc:research" for r in restrictions):
        lines += ["", "**Non-commercial**: it may not be used, served or exported for a commercial purpose."]
    lines += ["", "## Attribution", ""] + ([f"- {a}" for a in attribution] or ["- none recorded"])
    if base:
        lines += ["", "## Base model", "",
                  f"Fine-tuned from {base['name']} (sha256 {base['content_hash']}), licence {base.get('licence')}, "
                  f"source {base.get('source')}. Its licence applies to this model as well."]
    lines += ["", "The machine-readable, signed form of these terms is `restrictions.json` in this folder.", ""]
    return "\n".join(lines)
