"""Evaluate a finished run on its held-out items, through the governed reader."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file

from hearthkit.data.loader import GovernedReader
from hearthkit.engine.config import RunConfig
from hearthkit.evaluate.metrics import disaggregate, gaps
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes import get_recipe
from hearthkit.store.cas import ContentStore

GROUP_COLUMNS = ["speaker", "dialect", "gender"]


def evaluate_run(run_dir: Path, by: list[str] | None = None, beam: int | None = None) -> dict:
    """Per-item records, per-group rows and gaps of the run's final model on its held-out items."""
    spec = json.loads((run_dir / "run.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    recipe = get_recipe(cfg.recipe)
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    if beam is not None and hasattr(mcfg, "decode"):
        mcfg.decode.beam = beam  # evaluate with another beam width than the config's
    prep = recipe.load_prep(run_dir / "prep")
    model = recipe.build_model(mcfg, prep)
    model.load_state_dict(load_file(str(run_dir / "final" / "model.safetensors")))
    manifest = Manifest.read(run_dir / "manifest.json")
    test_ids = set(json.loads((run_dir / "split.json").read_text())["test"])
    entries = [e for e in manifest.included if e["item_id"] in test_ids]
    reader = GovernedReader(ContentStore(Path(spec["store"])), entries, run_dir / "access" / "eval.jsonl")
    records = recipe.evaluate(model, mcfg, prep, entries, reader) if entries else []
    rows = disaggregate(records, by or GROUP_COLUMNS, recipe.metric_names) if records else []
    return {"records": records, "rows": rows, "gaps": gaps(rows, recipe.metric_names) if rows else {},
            "metrics": recipe.metric_names}
