"""Export a published model: weights (safetensors), card, config, preparation and signed restrictions, to a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model
from hearthkit.errors import HearthError


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
    shutil.copy2(src / "model.safetensors", tmp / "model.safetensors")
    shutil.copy2(src / "model_card.md", tmp / "README.md")  # the Hugging Face name of a model card
    for extra in ("config.json", "evaluation.json"):
        if (src / extra).is_file():
            shutil.copy2(src / extra, tmp / extra)
    if (src / "prep").is_dir():
        shutil.copytree(src / "prep", tmp / "prep")
    # The restrictions travel inside the folder, machine-readable and signed over the copied weights: whoever
    # uses this folder as a parent or serves it gets them enforced (lineage/folder.py), whatever README.md says.
    write_restrictions(tmp, ws, name, recipe, restrictions, attribution, lineage, manifest_hash)
    if dest.exists():
        dest.rmdir()
    tmp.replace(dest)
    audit.record(catalog, "export", requester, model=name, purpose=purpose, to=str(dest))
    return dest, restrictions
