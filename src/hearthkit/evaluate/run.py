"""Evaluate a finished run on its held-out items, through the governed reader."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from hearthkit.data.loader import GovernedReader
from hearthkit.engine.config import RunConfig
from hearthkit.evaluate.metrics import disaggregate, gaps, signatures
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes import get_recipe
from hearthkit.store.vault import store_from_spec


def evaluate_run(run_dir: Path, by: list[str] | None = None, beam: int | None = None) -> dict:
    """Per-item records, per-group rows and gaps of the run's final model on its held-out items."""
    spec = json.loads((run_dir / "run.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    # Same thread count as a training worker: on a busy machine extra threads slow small ops down, not up.
    torch.set_num_threads(cfg.launch.threads_per_worker)
    recipe = get_recipe(cfg.recipe)
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    if beam is not None and hasattr(mcfg, "decode"):
        mcfg.decode.beam = beam  # evaluate with another beam width than the config's
    prep = recipe.load_prep(run_dir / "prep")
    model = recipe.build_model(mcfg, prep)
    model.load_state_dict(load_file(str(run_dir / "final" / "model.safetensors")))
    manifest = Manifest.read(run_dir / "manifest.json")
    split = json.loads((run_dir / "split.json").read_text())
    store = store_from_spec(spec)
    # Settings fitted after training (e.g. a decision threshold) come from training items only, never test ones.
    train_ids = set(split["train"])
    train_entries = [e for e in manifest.included if e["item_id"] in train_ids]
    prep.update(recipe.calibrate(model, mcfg, prep, train_entries,
                                 GovernedReader(store, train_entries, run_dir / "access" / "calibrate.jsonl"),
                                 run_dir / "prep"))
    test_ids = set(split["test"])
    entries = [e for e in manifest.included if e["item_id"] in test_ids]
    reader = GovernedReader(store, entries, run_dir / "access" / "eval.jsonl")
    records = recipe.evaluate(model, mcfg, prep, entries, reader) if entries else []
    rows = disaggregate(records, by or recipe.group_columns(mcfg), recipe.metric_names) if records else []
    return {"records": records, "rows": rows, "gaps": gaps(rows, recipe.metric_names) if rows else {},
            "metrics": recipe.metric_names, "signatures": signatures(recipe.metric_names)}
