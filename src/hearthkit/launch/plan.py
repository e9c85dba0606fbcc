"""Plan a run: compute its manifest under policy, split it, fit recipe preparation, write the run folder."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Run
from hearthkit.data.loader import GovernedReader
from hearthkit.data.split import split_entries
from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError
from hearthkit.governance.manifest import Manifest, Request
from hearthkit.governance.policy import compute_manifest
from hearthkit.recipes import get_recipe
from hearthkit.store.cas import ContentStore
from hearthkit.workspace import Workspace


def make_request(cfg: RunConfig, as_of: date | None = None) -> Request:
    """The policy request of CFG, evaluated at AS_OF (default: the config's date, else today)."""
    when = as_of or cfg.request.as_of or date.today()
    return Request(purpose=cfg.request.purpose, requester=cfg.request.requester,
                   collections=tuple(sorted(cfg.request.collections)), as_of=when.isoformat())


def plan_run(ws: Workspace, catalog: Catalog, cfg: RunConfig) -> tuple[Path, Manifest, bool]:
    """Create (or re-open, to resume) the run folder of CFG; return it, its manifest, and whether it resumes."""
    run_dir = ws.run_dir(cfg.name)
    spec_path = run_dir / "run.json"
    recipe = get_recipe(cfg.recipe)
    recipe.ModelConfig.model_validate(cfg.model)  # fail before any work on a bad model section
    if spec_path.is_file():
        spec = json.loads(spec_path.read_text())
        if spec["config"] != json.loads(cfg.model_dump_json()):
            old = RunConfig.model_validate(spec["config"])
            if old.model_dump(exclude={"train", "launch"}) != cfg.model_dump(exclude={"train", "launch"}):
                raise HearthError(f"run {cfg.name!r} exists with a different config; choose a new name to start afresh")
        # Same request at the date the run was planned: the catalog must still give the same manifest.
        manifest = compute_manifest(catalog, make_request(cfg, date.fromisoformat(spec["as_of"])))
        if manifest.hash != spec["manifest_hash"]:
            raise HearthError(f"run {cfg.name!r}: the catalog changed since it was planned (consent, labels or "
                              "items); its manifest no longer holds, so it cannot resume; plan a new run")
        spec["config"] = json.loads(cfg.model_dump_json())  # e.g. more steps on resume
        spec_path.write_text(json.dumps(spec, indent=1))
        return run_dir, manifest, True

    manifest = compute_manifest(catalog, make_request(cfg))
    if not manifest.included:
        raise HearthError(f"no item may be used for this request ({len(manifest.excluded)} excluded); "
                          "see `hearth plan` for the reasons")
    train, test = split_entries(manifest.included, cfg.split.test_fraction, cfg.split.by, cfg.split.seed,
                                cfg.split.test_values)
    if not train:
        raise HearthError("the split left no training items; lower split.test_fraction")
    run_dir.mkdir(parents=True, exist_ok=True)
    mhash = manifest.write(run_dir / "manifest.json")
    (run_dir / "split.json").write_text(json.dumps({"by": cfg.split.by, "train": [e["item_id"] for e in train],
                                                    "test": [e["item_id"] for e in test]}))
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    # Preparation (e.g. a vocabulary) reads training items only, through the governed reader.
    reader = GovernedReader(ContentStore(ws.store_dir), train, run_dir / "access" / "prepare.jsonl")
    recipe.prepare(mcfg, train, run_dir / "prep", reader=reader, manifest=manifest)
    spec = {"config": json.loads(cfg.model_dump_json()), "manifest_hash": mhash,
            "as_of": manifest.request.as_of, "store": str(ws.store_dir)}
    spec_path.write_text(json.dumps(spec, indent=1))
    with catalog.session() as s:
        if s.scalar(select(Run).where(Run.name == cfg.name)) is None:
            s.add(Run(name=cfg.name, recipe=cfg.recipe, purpose=cfg.request.purpose,
                      requester=cfg.request.requester, manifest_hash=mhash, status="planned",
                      config=spec["config"]))
    return run_dir, manifest, False
