"""Evaluate a finished run on its held-out items, through the governed reader."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors.torch import load_file

from hearthkit.data.loader import GovernedReader
from hearthkit.engine.config import RunConfig, apply_override, field_error
from hearthkit.errors import HearthError
from hearthkit.evaluate.metrics import disaggregate, gaps, signatures
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes import get_recipe
from hearthkit.store.vault import store_from_spec


def evaluate_run(run_dir: Path, by: list[str] | None = None, beam: int | None = None, split_name: str = "test",
                 overrides: list[str] | None = None) -> dict:
    """Per-item records, per-group rows and gaps of the run's final model on its test (or validation) items.

    OVERRIDES (`key=value` on the model section, e.g. decode.lm.weight=0.5) change decoding, not the weights:
    with split_name "valid" they let decoding settings be chosen on items that are neither trained on nor test.
    """
    spec = json.loads((run_dir / "run.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    split = json.loads((run_dir / "split.json").read_text())
    if split_name not in ("test", "valid"):
        raise HearthError(f"--split {split_name}: choose test or valid")
    if split_name == "valid" and not split.get("valid"):
        raise HearthError(f"run {run_dir.name!r} held out no validation items; train with split.valid_fraction")
    # Same thread count as a training worker: on a busy machine extra threads slow small ops down, not up.
    torch.set_num_threads(cfg.launch.threads_per_worker)
    recipe = get_recipe(cfg.recipe)
    model_section = copy.deepcopy(cfg.model)
    for o in overrides or []:
        apply_override(model_section, o)
    try:
        mcfg = recipe.ModelConfig.model_validate(model_section)
    except ValidationError as exc:
        raise HearthError(f"--set: {field_error(exc, 'model.')}") from None
    if beam is not None and hasattr(mcfg, "decode"):
        mcfg.decode.beam = beam  # evaluate with another beam width than the config's
    prep = recipe.load_prep(run_dir / "prep")
    model = recipe.build_model(mcfg, prep)
    model.load_state_dict(load_file(str(run_dir / "final" / "model.safetensors")))
    manifest = Manifest.read(run_dir / "manifest.json")
    store = store_from_spec(spec)
    # Settings fitted after training (e.g. a decision threshold) come from training items only, never test ones.
    train_ids = set(split["train"])
    train_entries = [e for e in manifest.included if e["item_id"] in train_ids]
    prep.update(recipe.calibrate(model, mcfg, prep, train_entries,
                                 GovernedReader(store, train_entries, run_dir / "access" / "calibrate.jsonl"),
                                 run_dir / "prep"))
    held_ids = set(split[split_name])
    entries = [e for e in manifest.included if e["item_id"] in held_ids]
    log = "eval.jsonl" if split_name == "test" else "eval-valid.jsonl"
    reader = GovernedReader(store, entries, run_dir / "access" / log)
    records = recipe.evaluate(model, mcfg, prep, entries, reader) if entries else []
    rows = disaggregate(records, by or recipe.group_columns(mcfg), recipe.metric_names) if records else []
    return {"records": records, "rows": rows, "gaps": gaps(rows, recipe.metric_names) if rows else {},
            "metrics": recipe.metric_names, "signatures": signatures(recipe.metric_names)}
