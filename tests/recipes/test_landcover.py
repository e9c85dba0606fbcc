"""The landcover recipe: per-pixel segmentation end to end under torchrun; patch classification in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item
from hearthkit.data.loader import GovernedReader
from hearthkit.errors import HearthError
from hearthkit.ingest.geotiff import import_geotiff_folder
from hearthkit.recipes.landcover.recipe import RECIPE, LandcoverConfig
from hearthkit.store.cas import ContentStore
from hearthkit.workspace import open_workspace
from tests.conftest import GEO_TEST_SCENES, ROOT, hearth


def test_segmentation_trains_end_to_end(geo_scenes: Path, workspace: Path):
    hearth("data", "import-geotiff", str(geo_scenes), ws=workspace)
    out = hearth("train", str(ROOT / "configs" / "demo-landcover.yaml"), "--set", "name=test-lc",
                 "--set", f"split.test_values={GEO_TEST_SCENES}", "--set", "train.steps=40",
                 "--set", "train.checkpoint_every=40", ws=workspace).stdout
    assert "ACCURACY" in out and "MIOU" in out
    ev = json.loads((workspace / "models" / "test-lc" / "evaluation.json").read_text())
    overall = next(r for r in ev["rows"] if r["by"] == "overall")
    assert overall["accuracy"] > 0.9 and overall["miou"] > 0.7
    prep = json.loads((workspace / "runs" / "test-lc" / "prep" / "prep.json").read_text())
    assert prep["classes"] == ["forest", "water", "bare"] and len(prep["stats"]["mean"]) == 4


def test_patch_classification_learns_in_process(geo_scenes: Path, workspace: Path, tmp_path: Path):
    ws = open_workspace(workspace)
    catalog = Catalog.open(ws.db_url)
    import_geotiff_folder(catalog, ContentStore(ws.store_dir), geo_scenes)
    with catalog.session() as s:
        entries = [{"item_id": i.id, "content_hash": i.content_hash, "kind": i.kind, "meta": i.meta}
                   for i in s.scalars(select(Item))]
    train = [e for e in entries if e["meta"]["scene"] not in GEO_TEST_SCENES]
    test = [e for e in entries if e["meta"]["scene"] in GEO_TEST_SCENES]
    store = ContentStore(ws.store_dir)
    cfg = LandcoverConfig(task="classification", width=8, depth=2, patch=16, patches_per_epoch=512)
    prep = RECIPE.prepare(cfg, train, tmp_path / "prep", reader=GovernedReader(store, train))
    data = RECIPE.dataset(cfg, prep, train, GovernedReader(store, train), train=True)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model on a shared 2-core machine: one thread is faster than two fighting
    model = RECIPE.build_model(cfg, prep)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    for step in range(80):
        model.train()
        loss, stats = RECIPE.loss(model, RECIPE.collate([data[(step * 16 + j) % len(data)] for j in range(16)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    records = RECIPE.evaluate(model, cfg, prep, test, GovernedReader(store, test))
    torch.set_num_threads(threads)
    cm = sum(torch.tensor(r["confusion"]) for r in records)
    majority_share = cm.sum(1).max() / cm.sum()
    accuracy = cm.trace() / cm.sum()
    assert stats["samples"] == 16 and accuracy > max(0.75, majority_share + 0.1)  # well above "always forest"
    try:
        GovernedReader(store, train).read(test[0]["content_hash"])
    except PermissionError:
        pass
    else:
        raise AssertionError("the governed reader must refuse items outside its entries")


def test_continuing_from_a_model_keeps_its_band_statistics_and_classes(geo_scenes: Path, workspace: Path,
                                                                      tmp_path: Path):
    from hearthkit.recipes.change.model import ChangeConfig
    from hearthkit.recipes.change.recipe import RECIPE as CHANGE

    ws = open_workspace(workspace)
    catalog = Catalog.open(ws.db_url)
    store = ContentStore(ws.store_dir)
    import_geotiff_folder(catalog, store, geo_scenes)
    with catalog.session() as s:
        entries = [{"item_id": i.id, "content_hash": i.content_hash, "kind": i.kind, "meta": i.meta}
                   for i in s.scalars(select(Item))]
    scenes = sorted({e["meta"]["scene"] for e in entries})
    first = [e for e in entries if e["meta"]["scene"] in scenes[:2]]  # the parent's scenes
    later = [e for e in entries if e["meta"]["scene"] in scenes[2:]]  # new scenes the child is trained on
    cfg = LandcoverConfig(width=8, depth=2)
    for recipe, c in ((RECIPE, cfg), (CHANGE, ChangeConfig(width=8, depth=2))):
        parent = tmp_path / recipe.name / "parent"  # a published model's folder: config.json, prep/
        theirs = recipe.prepare(c, first, parent / "prep", reader=GovernedReader(store, first))
        (parent / "config.json").write_text(json.dumps({"model": c.model_dump()}))
        own = recipe.prepare(c, later, tmp_path / recipe.name / "own", reader=GovernedReader(store, later))
        child = recipe.prepare(c, later, tmp_path / recipe.name / "child", reader=GovernedReader(store, later),
                               parent=parent)
        assert own["stats"] != theirs["stats"]  # the new scenes alone would scale the bands differently
        assert child["stats"] == theirs["stats"] and child["stats_from"] == "parent"
        saved = json.loads((tmp_path / recipe.name / "child" / "prep.json").read_text())
        assert saved["stats"] == theirs["stats"]
        other = c.model_copy(update={"bands": ["B04", "B03", "B02", "B08"]})  # same count, other order
        with pytest.raises(HearthError, match=r"model.bands: .* in init_from model parent; keep the parent's"):
            recipe.prepare(other, later, tmp_path / recipe.name / "x", reader=GovernedReader(store, later),
                           parent=parent)
    prep_json = tmp_path / "landcover" / "parent" / "prep" / "prep.json"
    renamed = json.loads(prep_json.read_text())
    renamed["classes"] = list(reversed(renamed["classes"]))
    prep_json.write_text(json.dumps(renamed))
    with pytest.raises(HearthError, match=r"landcover classes .* differ from init_from model parent's"):
        RECIPE.prepare(cfg, later, tmp_path / "y", reader=GovernedReader(store, later), parent=tmp_path /
                       "landcover" / "parent")
