"""Evaluate a finished run on its held-out items, through the governed reader."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors.torch import load_file
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Run
from hearthkit.data.loader import GovernedReader
from hearthkit.engine.config import RunConfig, apply_override, field_error
from hearthkit.errors import HearthError
from hearthkit.evaluate.metrics import disaggregate, gaps, signatures
from hearthkit.governance import audit
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes import get_recipe
from hearthkit.store.vault import store_from_spec


def evaluate_run(run_dir: Path, by: list[str] | None = None, beam: int | None = None, split_name: str = "test",
                 overrides: list[str] | None = None, catalog: Catalog | None = None) -> dict:
    """Per-item records, per-group rows and gaps of the run's final model on its test (or validation) items.

    OVERRIDES (`key=value` on the model section, e.g. decode.lm.weight=0.5) change decoding, not the weights:
    with split_name "valid" they let decoding settings be chosen on items that are neither trained on nor test.
    With CATALOG, the items this evaluation read are audited as a `data_access` event of phase "evaluation".
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
    _authorize_changed_folders(cfg, model_section, catalog)
    try:
        mcfg = recipe.ModelConfig.model_validate(model_section)
    except ValidationError as exc:
        raise HearthError(f"--set: {field_error(exc, 'model.', recipe.ModelConfig)}") from None
    if beam is not None and hasattr(mcfg, "decode"):
        mcfg.decode.beam = beam  # evaluate with another beam width than the config's
    prep = recipe.load_prep(run_dir / "prep")
    model = recipe.build_model(mcfg, prep)
    model.load_state_dict(load_file(str(run_dir / "final" / "model.safetensors")))
    manifest = Manifest.read(run_dir / "manifest.json")
    store = store_from_spec(spec)
    # Withdrawn items are not evaluated on (their bytes and words are erased): those the manifest records as erased,
    # and with a catalog every item it marks withdrawn. The most restricted reading of the run's items.
    gone = set(manifest.erased) | _withdrawn(catalog, [e["item_id"] for e in manifest.included])
    if gone:
        manifest.included = [e for e in manifest.included if e["item_id"] not in gone]
    # Settings fitted after training (e.g. a decision threshold) come from training items only, never test ones.
    train_ids = set(split["train"])
    train_entries = [e for e in manifest.included if e["item_id"] in train_ids]
    log = "eval.jsonl" if split_name == "test" else "eval-valid.jsonl"
    logs = {name: run_dir / "access" / name for name in ("calibrate.jsonl", log)}
    start = {name: p.stat().st_size if p.is_file() else 0 for name, p in logs.items()}  # logs are append-only
    prep.update(recipe.calibrate(model, mcfg, prep, train_entries,
                                 GovernedReader(store, train_entries, logs["calibrate.jsonl"]), run_dir / "prep"))
    held_ids = set(split[split_name])
    entries = [e for e in manifest.included if e["item_id"] in held_ids]
    reader = GovernedReader(store, entries, logs[log])
    try:
        records = recipe.evaluate(model, mcfg, prep, entries, reader) if entries else []
    finally:  # what was read is audited even when evaluation failed half-way
        if catalog is not None:  # the reader logs each read unbuffered before handing the bytes on: all are on disk
            read = {name: _items_read(p, start[name]) for name, p in logs.items()}
            with catalog.session() as s:
                run = s.scalar(select(Run).where(Run.name == cfg.name))
                audit.append(s, "data_access", cfg.request.requester, run=cfg.name,
                             run_id=run.id if run else None, manifest=spec["manifest_hash"], phase="evaluation",
                             split=split_name, items=read[log], calibration_items=read["calibrate.jsonl"])
    rows = disaggregate(records, by or recipe.group_columns(mcfg), recipe.metric_names) if records else []
    return {"records": records, "rows": rows, "gaps": gaps(rows, recipe.metric_names) if rows else {},
            "metrics": recipe.metric_names, "signatures": signatures(recipe.metric_names)}


def _withdrawn(catalog: Catalog | None, item_ids: list[int]) -> set[int]:
    """Those of ITEM_IDS the catalog marks withdrawn (none known without a catalog)."""
    from hearthkit.catalog.models import Item

    out: set[int] = set()
    if catalog is None:
        return out
    with catalog.session() as s:
        for b in range(0, len(item_ids), 5000):  # IN lists within what every database accepts
            out.update(s.scalars(select(Item.id).where(Item.id.in_(item_ids[b:b + 5000]),
                                                       Item.withdrawn_at.is_not(None))))
    return out


def _authorize_changed_folders(cfg: RunConfig, model_section: dict, catalog: Catalog | None) -> None:
    """Refuse `--set` of a model folder (init_from, decoder_from) that planning would refuse for the run's purpose.

    Evaluation may attach another folder (a cascade's asr model), and that folder's weights then shape what is
    decoded: it gets the same purpose check as at planning, and a base (which changes the weights) never changes.
    """
    from hearthkit.lineage.folder import OTHER_PARENT_KEYS, authorize_folder

    if model_section.get("base") != cfg.model.get("base"):
        raise HearthError("--set base: a base model changes the weights, not decoding; train a run with it")
    changed = [k for k in ("init_from", *OTHER_PARENT_KEYS)
               if model_section.get(k) and model_section.get(k) != cfg.model.get(k)]
    if not changed:
        return
    if catalog is None:  # most restricted reading: with no catalog to check the folder against, it is not used
        raise HearthError(f"--set {changed[0]}: a model folder can only be attached with the workspace's catalog "
                          "to check it against")
    from hearthkit.catalog.context import workspace_of

    with catalog.session() as s:
        for k in changed:
            try:
                authorize_folder(s, workspace_of(catalog), Path(model_section[k]), cfg.request.purpose,
                                 cfg.request.requester)
            except HearthError as exc:
                raise HearthError(f"--set {k}: {exc}") from None


def _items_read(log: Path, offset: int) -> int:
    """Distinct items in the access log LOG past byte OFFSET (what this evaluation read)."""
    if not log.is_file():
        return 0
    with open(log, "rb") as f:
        f.seek(offset)
        return len({json.loads(line)["item_id"] for line in f.read().decode("utf-8").splitlines() if line.strip()})
