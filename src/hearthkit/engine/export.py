"""Export a published model: final weights (safetensors), model card, config and preparation, to a new folder."""

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
    from hearthkit.catalog.models import Run
    from hearthkit.governance import audit
    from hearthkit.lineage.registry import guard

    with catalog.session() as s:
        model = s.scalar(select(Model).where(Model.name == name))
        if model is None:
            known = ", ".join(s.scalars(select(Model.name).order_by(Model.name))) or "none yet"
            raise HearthError(f"no model named {name!r} (models: {known})")
        run = s.get(Run, model.run_id)
        purpose, requester = purpose or run.purpose, requester or run.requester
        guard(s, name, purpose, requester)  # status, inherited restrictions, protocols
        src, restrictions = Path(model.path), list(model.restrictions)
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
    if dest.exists():
        dest.rmdir()
    tmp.replace(dest)
    audit.record(catalog, "export", requester, model=name, purpose=purpose, to=str(dest))
    return dest, restrictions
