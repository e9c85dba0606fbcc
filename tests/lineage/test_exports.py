"""Croissant (validated by mlcroissant) and W3C PROV (parsed by prov) exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item, Model, Run, RunItem
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.lineage.croissant import collection_card
from hearthkit.lineage.prov import prov_json
from hearthkit.store.cas import ContentStore
from hearthkit.workspace import open_workspace


@pytest.fixture
def catalog(workspace: Path, speech_archive: Path) -> Catalog:
    ws = open_workspace(workspace)
    cat = Catalog.open(ws.db_url)
    import_speech_folder(cat, ContentStore(ws.store_dir), speech_archive)
    return cat


def test_croissant_validates_with_mlcroissant(catalog: Catalog, tmp_path: Path) -> None:
    mlc = pytest.importorskip("mlcroissant", reason="mlcroissant is a dev dependency (make test installs it)")
    with catalog.session() as s:
        path = collection_card(s, "demo-korero", tmp_path / "card")
    doc = json.loads(path.read_text())
    assert doc["rai:dataUseCases"] and doc["rai:personalSensitiveInformation"]
    assert any("tk:secret_sacred" in x for x in doc["rai:personalSensitiveInformation"])
    ds = mlc.Dataset(jsonld=str(path))  # raises mlc.ValidationError on any schema problem
    records = list(ds.records("items"))
    assert len(records) == 48
    assert {r["items/speaker"].decode() for r in records} == {"hemi", "tama", "mere", "kiri"}


def test_prov_export_parses_and_links_parent(catalog: Catalog) -> None:
    from prov.model import ProvDocument

    with catalog.session() as s:
        items = s.query(Item).order_by(Item.id).all()
        ra = Run(name="ra", recipe="asr", purpose="research", requester="team", manifest_hash="a" * 64)
        rb = Run(name="rb", recipe="asr", purpose="research", requester="team", manifest_hash="b" * 64)
        s.add_all([ra, rb])
        s.flush()
        s.add_all([RunItem(run_id=ra.id, item_id=i.id) for i in items[:5]])
        s.add_all([RunItem(run_id=rb.id, item_id=i.id) for i in items[5:8]])
        a = Model(name="A", run_id=ra.id, path="x", recipe="asr", manifest_hash="a" * 64, restrictions=[])
        s.add(a)
        s.flush()
        s.add(Model(name="B", run_id=rb.id, path="y", recipe="asr", manifest_hash="b" * 64, parent_id=a.id,
                    restrictions=["tk:non_commercial"]))
    with catalog.session() as s:
        text = prov_json(s, "B")
    doc = ProvDocument.deserialize(content=text, format="json")
    records = {type(r).__name__ for r in doc.get_records()}
    assert {"ProvEntity", "ProvActivity", "ProvDerivation", "ProvGeneration", "ProvUsage"} <= records
    data = json.loads(text)
    derivations = list(data["wasDerivedFrom"].values())
    assert derivations[0]["prov:generatedEntity"] == "hearth:model/B"
    assert derivations[0]["prov:usedEntity"] == "hearth:model/A"
    members = data["hadMember"].values()
    assert len(members) == 8  # B's 3 items + A's 5 items (parent chain)
