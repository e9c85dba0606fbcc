"""Publish a finished run as a model: weights, preparation, evaluation, card, catalog entry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Model, Run
from hearthkit.governance.manifest import Manifest
from hearthkit.lineage.card import model_card, parent_info, write_card
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
    (tmp / "evaluation.json").write_text(json.dumps({k: evaluation[k] for k in ("rows", "gaps")}, indent=1))
    init_from = (cfg.get("model") or {}).get("init_from")
    parent = parent_info(Path(init_from)) if init_from else None
    card = model_card(name, cfg["recipe"], manifest, len(split["train"]), len(split["test"]), evaluation["rows"],
                      evaluation["gaps"], tuple(evaluation["metrics"]), cfg, parent)
    write_card(tmp / "model_card.md", card)
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
        # A model initialised from a parent carries the parent's restrictions too.
        model.restrictions = sorted(set(manifest.restrictions) | set((parent or {}).get("restrictions") or []))
        model.metrics = {m: overall.get(m) for m in evaluation["metrics"]}
        model.status = "active"
    return out / "model_card.md"
