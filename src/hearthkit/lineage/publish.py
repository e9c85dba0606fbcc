"""Publish a finished run as a model: weights, preparation, evaluation, card, catalog entry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model, ModelParent, Run
from hearthkit.governance.manifest import Manifest
from hearthkit.lineage.card import model_card, parent_info, write_card
from hearthkit.lineage.folder import write_restrictions
from hearthkit.lineage.ledger import run_ledger
from hearthkit.workspace import Workspace


def publish_model(ws: Workspace, catalog: Catalog, run_dir: Path, evaluation: dict) -> Path:
    """Copy the run's final model into the workspace's models folder with its card; return the card path."""
    spec = json.loads((run_dir / "run.json").read_text())
    cfg = spec["config"]
    name = cfg["name"]
    manifest = Manifest.read(run_dir / "manifest.json")
    split = json.loads((run_dir / "split.json").read_text())
    out = ws.models_dir / name
    tmp = ws.models_dir / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(run_dir / "final" / "model.safetensors", tmp / "model.safetensors")
    shutil.copytree(run_dir / "prep", tmp / "prep")
    (tmp / "config.json").write_text(json.dumps(cfg, indent=1, ensure_ascii=False))
    (tmp / "evaluation.json").write_text(json.dumps({k: evaluation.get(k) for k in ("rows", "gaps", "signatures")},
                                                      indent=1))
    init_from = (cfg.get("model") or {}).get("init_from")
    parent_folder = parent_info(Path(init_from)) if init_from else None
    if parent_folder:  # what governs the parent is its registration or signed restrictions.json, never its card
        from hearthkit.lineage.folder import inspect_folder

        with catalog.session() as s:
            governed = inspect_folder(s, ws, Path(init_from))
        parent_folder.update(name=governed.name, restrictions=governed.restrictions, source=governed.source,
                             chain=governed.parents)
    # Other parent folders (st's decoder_from): their restrictions and attribution are inherited too.
    from hearthkit.lineage.folder import OTHER_PARENT_KEYS, inspect_folder

    others = []
    for key in OTHER_PARENT_KEYS:
        if other := (cfg.get("model") or {}).get(key):
            with catalog.session() as s:
                others.append((key, inspect_folder(s, ws, Path(other))))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    overall = next((r for r in evaluation["rows"] if r["by"] == "overall"), {})
    with catalog.session() as s:
        run = s.scalar(select(Run).where(Run.name == name))
        run.status = "finished"
        model = s.scalar(select(Model).where(Model.name == name))
        if model is None:
            model = Model(name=name, run_id=run.id, path=str(out))
            s.add(model)
        model.card_path = str(out / "model_card.md")
        model.recipe = cfg["recipe"]
        model.manifest_hash = manifest.hash
        model.metrics = {m: overall.get(m) for m in evaluation["metrics"]}
        model.status = "active"
        parent = s.scalar(select(Model).where(Model.name == spec["parent"]["name"])) if spec.get("parent") else None
        if parent is None and parent_folder and governed.model_id is not None:  # a folder of this workspace's model
            parent = s.get(Model, governed.model_id)
        # Inheritance: the union of the training items' restrictions/attribution and the parent's.
        model.parent_id = parent.id if parent else None
        model.restrictions = sorted(set(manifest.restrictions) | set(parent.restrictions if parent else [])
                                    | set((parent_folder or {}).get("restrictions") or []))
        model.attribution = sorted(set(manifest.attribution) | set(parent.attribution if parent else []))
        model.attribution = sorted(set(model.attribution) | set(governed.attribution if parent_folder else []))
        base = spec.get("base") or run.base  # issue 20: a pretrained base's terms are inherited like the items'
        if base:
            from hearthkit.lineage.base import base_attribution, base_from_record, base_restrictions

            ref = base_from_record(base)
            model.restrictions = sorted(set(model.restrictions) | set(base_restrictions(ref)))
            model.attribution = sorted(set(model.attribution) | set(base_attribution(ref)))
        lineage = _lineage(s, parent)
        if parent is None and parent_folder:  # a signed or steward-registered folder from outside the registry
            lineage = [{"model": governed.name, "recipe": governed.recipe, "manifest_sha256": None,
                        "source": governed.source, "restrictions": governed.restrictions}, *governed.parents]
        for key, fm in others:
            if model.parent_id is None and fm.model_id is not None:  # no init_from: this one is the parent
                model.parent_id = fm.model_id
            if fm.model_id is not None:  # every parent is an edge, so a withdrawal behind it reaches this model
                s.flush()
                if s.get(ModelParent, (model.id, fm.model_id, key)) is None:
                    s.add(ModelParent(model_id=model.id, parent_id=fm.model_id, role=key))
            model.restrictions = sorted(set(model.restrictions) | set(fm.restrictions))
            model.attribution = sorted(set(model.attribution) | set(fm.attribution))
            known = s.get(Model, fm.model_id) if fm.model_id is not None else None
            lineage = [*lineage, {"model": fm.name, "recipe": fm.recipe, "via": key, "source": fm.source,
                                  "manifest_sha256": known.manifest_hash if known else None,
                                  "restrictions": fm.restrictions}, *fm.parents]
        restrictions, attribution = model.restrictions, model.attribution
    card = model_card(name, cfg["recipe"], manifest, len(split["train"]), len(split["test"]), evaluation["rows"],
                      evaluation["gaps"], tuple(evaluation["metrics"]), cfg, restrictions=restrictions,
                      attribution=attribution, lineage=lineage, signatures=evaluation.get("signatures"),
                      parent=parent_folder, base=base, ledger=run_ledger(ws, catalog, name))
    write_card(out / "model_card.md", card)
    # Machine-readable, signed restrictions over these very weights: they travel with any copy of the folder.
    write_restrictions(out, ws, name, cfg["recipe"], restrictions, attribution, lineage, manifest.hash)
    return out / "model_card.md"


def _lineage(s, parent: Model | None) -> list[dict]:
    """The parent chain for the card: name, manifest hash, recipe of each ancestor."""
    from hearthkit.lineage.registry import ancestors

    if parent is None:
        return []
    return [{"model": m.name, "recipe": m.recipe, "manifest_sha256": m.manifest_hash}
            for m in [parent, *ancestors(s, parent)]]
