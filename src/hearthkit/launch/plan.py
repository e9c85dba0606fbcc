"""Plan a run: compute its manifest under policy, split it, fit recipe preparation, write the run folder."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Run, RunItem
from hearthkit.data.loader import GovernedReader
from hearthkit.data.split import split_entries
from hearthkit.engine.config import RunConfig, validate_model
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.manifest import Manifest, Request
from hearthkit.governance.policy import compute_manifest
from hearthkit.governance.requests import READ_ONLY, authorise
from hearthkit.lineage.base import base_for_run, recheck_run_base
from hearthkit.recipes import get_recipe
from hearthkit.store.text import SEALED_TEXT
from hearthkit.store.vault import workspace_store
from hearthkit.workspace import Workspace


def make_request(cfg: RunConfig, as_of: date | None = None) -> Request:
    """The policy request of CFG, evaluated at AS_OF (default: the config's date, else today).

    A past date only reproduces an old manifest read-only (`hearth plan`); training uses `governed_manifest`,
    which judges today.
    """
    when = as_of or cfg.request.as_of or date.today()
    if when > date.today():
        # Embargo, seasons and consent expiry are judged at this date: a request may not pretend to be later.
        raise HearthError(f"request.as_of {when.isoformat()} is in the future; policy is evaluated today or earlier")
    return Request(purpose=cfg.request.purpose, requester=cfg.request.requester,
                   collections=tuple(sorted(cfg.request.collections)), as_of=when.isoformat())


def governed_manifest(catalog: Catalog, cfg: RunConfig) -> Manifest:
    """The manifest a run may train on, judged today: its config's request, or (request.id) its approved request.

    Data use is judged at the time of use (issue 19, class 3): a past request.as_of is refused, since consent that
    has expired since, a season now closed or an embargo would otherwise be read today. Without request.id,
    items that need a steward are simply held out. With it, the stored request must be approved (or need no
    approval), its manifest must still hash to what the stewards approved, and judged today it must permit
    exactly the same use.
    """
    today = date.today()
    if cfg.request.as_of is not None and cfg.request.as_of < today:
        raise HearthError(f"training refused: request.as_of {cfg.request.as_of}: {READ_ONLY}")
    if cfg.request.id is None:
        return compute_manifest(catalog, make_request(cfg, today))
    rid = cfg.request.id
    req, approved_hash = authorise(catalog, rid, cfg.request.purpose, cfg.request.requester,
                                   list(cfg.request.collections), cfg.recipe)
    approved = compute_manifest(catalog, req)
    now = compute_manifest(catalog, replace(req, as_of=today.isoformat()))
    if approved.hash != approved_hash or now.use() != approved.use():
        raise HearthError(f"training refused: the manifest of request {rid} changed since approval (judged today, "
                          f"{today}: consent, labels, seasons, embargo or items changed); make a new request")
    return now


def plan_run(ws: Workspace, catalog: Catalog, cfg: RunConfig) -> tuple[Path, Manifest, bool]:
    """Create (or re-open, to resume) the run folder of CFG; return it, its manifest, and whether it resumes."""
    run_dir = ws.run_dir(cfg.name)
    spec_path = run_dir / "run.json"
    validate_model(cfg, f"run {cfg.name}")  # fail before any work on a bad model section, naming the field
    recipe = get_recipe(cfg.recipe)
    if spec_path.is_file():
        spec = json.loads(spec_path.read_text())
        if spec["config"] != json.loads(cfg.model_dump_json()):
            old = RunConfig.model_validate(spec["config"])
            if old.model_dump(exclude={"train", "launch"}) != cfg.model_dump(exclude={"train", "launch"}):
                raise HearthError(f"run {cfg.name!r} exists with a different config; choose a new name to start afresh")
        # Every resume is a new use of the data, judged today: the request, evaluated now, must still permit
        # exactly what the run planned to read.
        planned = Manifest.read(run_dir / "manifest.json")
        if planned.hash != spec["manifest_hash"]:
            raise HearthError(f"run {cfg.name!r}: manifest.json does not match the hash recorded when it was "
                              "planned; plan a new run")
        if governed_manifest(catalog, cfg).use() != planned.use():
            raise HearthError(f"run {cfg.name!r}: the catalog changed since it was planned (judged today, "
                              f"{date.today()}: consent, labels, seasons, embargo or items); its manifest no longer "
                              "holds, so it cannot resume; plan a new run")
        manifest = planned
        recheck_run_base(catalog, spec.get("base"))  # issue 20: a base changed on disk since planning is refused
        spec["config"] = json.loads(cfg.model_dump_json())  # e.g. more steps on resume
        spec_path.write_text(json.dumps(spec, indent=1))
        return run_dir, manifest, True

    parent = _parent(catalog, cfg)
    # issue 20: `model.base` (any recipe) resolved, hash-checked and allowed for this purpose; recorded on the run
    base = base_for_run(catalog, cfg.model, cfg.request.purpose, cfg.request.requester)
    manifest = governed_manifest(catalog, cfg)
    if not manifest.included:
        raise HearthError(f"no item may be used for this request ({len(manifest.excluded)} excluded); "
                          "see `hearth plan` for the reasons")
    text_of = None
    text_split = "text" in (cfg.split.by, cfg.split.validation_field() if cfg.split.valid_fraction else None)
    if text_split and any(SEALED_TEXT in (e.get("meta") or {}) for e in manifest.included):
        # A sealed collection's transcripts are read for the split like any item: governed and logged.
        text_of = GovernedReader(workspace_store(ws), manifest.included, run_dir / "access" / "split.jsonl").text
    train, test = split_entries(manifest.included, cfg.split.test_fraction, cfg.split.by, cfg.split.seed,
                                cfg.split.test_values, text_of)
    valid: list[dict] = []
    if cfg.split.valid_fraction:  # from the training side only, with its own seed
        field = cfg.split.validation_field()
        train, valid = split_entries(train, cfg.split.valid_fraction, field, cfg.split.seed + 1, text_of=text_of)
        if not valid:
            raise HearthError(f"split.valid_fraction {cfg.split.valid_fraction} held out no training items "
                              f"(too few values of {field!r}); raise it or set split.valid_by")
    if not train:
        raise HearthError("the split left no training items; lower split.test_fraction or split.valid_fraction")
    run_dir.mkdir(parents=True, exist_ok=True)
    mhash = manifest.write(run_dir / "manifest.json")
    (run_dir / "split.json").write_text(json.dumps({"by": cfg.split.by, "train": [e["item_id"] for e in train],
                                                    "valid": [e["item_id"] for e in valid],
                                                    "valid_by": cfg.split.validation_field() if valid else None,
                                                    "test": [e["item_id"] for e in test]}))
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    # Preparation (e.g. a vocabulary) reads training items only, through the governed reader.
    reader = GovernedReader(workspace_store(ws), train, run_dir / "access" / "prepare.jsonl")
    recipe.prepare(mcfg, train, run_dir / "prep", reader=reader, manifest=manifest,
                   parent=Path(parent["path"]) if parent else None)
    spec = {"config": json.loads(cfg.model_dump_json()), "manifest_hash": mhash,
            "as_of": manifest.request.as_of, "store": str(ws.store_dir), "parent": parent,
            "keys": str(ws.keys_dir), "base": base}
    with catalog.session() as s:
        run = s.scalar(select(Run).where(Run.name == cfg.name))
        if run is None:
            run = Run(name=cfg.name, recipe=cfg.recipe, purpose=cfg.request.purpose,
                      requester=cfg.request.requester, manifest_hash=mhash, status="planned", config=spec["config"])
            s.add(run)
            s.flush()
        run.base = base
        # The manifest's items, indexed for "which models learned from this item?" (lineage, withdrawal).
        s.execute(RunItem.__table__.delete().where(RunItem.run_id == run.id))
        s.execute(RunItem.__table__.insert(), [{"run_id": run.id, "item_id": e["item_id"]} for e in manifest.included])
        audit.append(s, "manifest", cfg.request.requester, run=cfg.name, manifest=mhash, request=cfg.request.id,
                     purpose=cfg.request.purpose, included=len(manifest.included),
                     excluded=manifest.excluded_counts(),
                     **({"base": {"name": base["name"], "content_hash": base["content_hash"]}} if base else {}))
    spec_path.write_text(json.dumps(spec, indent=1))  # written last: its presence means "planned"
    return run_dir, manifest, False


def _parent(catalog: Catalog, cfg: RunConfig) -> dict | None:
    """The model CFG initialises from, checked for this run's purpose, as {name, path}.

    A recipe's own transfer setting (asr's `model.init_from: FOLDER`) gets the same check: the folder must be a
    model of this workspace, carry a restrictions.json signed by this workspace over its weights, or be registered
    by a steward (lineage/folder.py); its restrictions are then checked here and inherited when it is published.
    """
    from hearthkit.lineage.folder import OTHER_PARENT_KEYS

    folder = cfg.model.get("init_from")
    others = [cfg.model[k] for k in OTHER_PARENT_KEYS if cfg.model.get(k)]  # e.g. st's decoder_from
    if not cfg.init_from and not folder and not others:
        return None
    from hearthkit.catalog.context import workspace_of
    from hearthkit.lineage.folder import authorize_folder
    from hearthkit.lineage.registry import guard

    with catalog.session() as s:
        for f in [folder, *others] if folder else others:
            authorize_folder(s, workspace_of(catalog), Path(f), cfg.request.purpose, cfg.request.requester)
        if not cfg.init_from:
            return None
        m = guard(s, cfg.init_from, cfg.request.purpose, cfg.request.requester)
        if m.recipe and m.recipe != cfg.recipe:
            raise HearthError(f"init_from: model {m.name} is a {m.recipe} model, not {cfg.recipe}")
        return {"name": m.name, "path": m.path}


def parent_model(catalog: Catalog, cfg: RunConfig) -> dict | None:
    """The model CFG initialises from, checked for its request exactly as planning the run will check it."""
    base_for_run(catalog, cfg.model, cfg.request.purpose, cfg.request.requester)  # and its base (issue 20)
    return _parent(catalog, cfg)  # `hearth plan` refuses what `hearth train` would refuse


def record_data_access(catalog: Catalog, run_dir: Path, name: str) -> int:
    """Audit what a run's workers read (from the loader's access logs): run, manifest hash, item count.

    Phase "training": preparation and the workers' reads; evaluation reads (calibrate, eval*) are audited apart
    by `evaluate.run.evaluate_run`, phase "evaluation".
    """
    spec = json.loads((run_dir / "run.json").read_text())
    read: set[int] = set()
    for log in sorted((run_dir / "access").glob("*.jsonl")):
        if log.name.startswith(("eval", "calibrate")):
            continue
        for line in log.read_text(encoding="utf-8").splitlines():
            if line.strip():
                read.add(json.loads(line)["item_id"])
    with catalog.session() as s:
        run = s.scalar(select(Run).where(Run.name == name))
        audit.append(s, "data_access", spec["config"]["request"]["requester"], run=name,
                     run_id=run.id if run else None, manifest=spec["manifest_hash"], phase="training",
                     items=len(read))
    return len(read)
