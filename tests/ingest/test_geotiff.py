"""GeoTIFF import (OSCD layout): georeference kept per item, licence and labels recorded, bad files reported."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from sqlalchemy import func, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item, Label
from hearthkit.demo.geo import make_geo_scenes
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import compute_manifest
from hearthkit.ingest.geotiff import import_geotiff_folder
from hearthkit.store.cas import ContentStore
from hearthkit.workspace import open_workspace
from tests.conftest import hearth


@pytest.fixture
def scenes(tmp_path: Path) -> Path:
    folder = tmp_path / "scenes"
    make_geo_scenes(folder, n_scenes=4, size=64, seed=3)
    return folder


def _open(ws: Path):
    w = open_workspace(ws)
    return Catalog.open(w.db_url), ContentStore(w.store_dir)


def test_import_keeps_georeference_and_bytes(scenes: Path, workspace: Path):
    catalog, store = _open(workspace)
    report = import_geotiff_folder(catalog, store, scenes)
    assert (report.imported, report.problems) == (40, [])  # 4 scenes x (8 band files + change mask + land cover)
    with catalog.session() as s:
        item = s.scalar(select(Item).where(Item.external_id == "scene02/imgs_2/B08"))
        src = scenes / "scene02" / "imgs_2" / "scene02_B08.tif"
        with rasterio.open(src) as ds:
            assert item.meta["crs"] == "EPSG:32633" == ds.crs.to_string()
            assert item.meta["bounds"] == list(ds.bounds)
            assert item.meta["transform"] == list(ds.transform)[:6]
        assert (item.kind, item.meta["band_name"], item.meta["role"], item.meta["date"]) == (
            "raster", "nir", "after", "2023-06-01")
        assert store.get(item.content_hash) == src.read_bytes()
        mask = s.scalar(select(Item).where(Item.external_id == "scene02/cm"))
        assert mask.meta["crs"] is None and mask.meta["grid"] == "imgs_1" and mask.meta["change_value"] == 1
        assert mask.meta["area_geojson"]["type"] == "FeatureCollection"
    again = import_geotiff_folder(catalog, store, scenes)
    assert (again.imported, again.unchanged) == (0, 40)


def test_bad_files_reported_one_line_each_rest_imported(scenes: Path, workspace: Path):
    b08 = scenes / "scene00" / "imgs_1" / "scene00_B08.tif"
    with rasterio.open(b08) as ds:
        profile, arr = ds.profile, ds.read(1)
    profile.update(count=3)
    with rasterio.open(b08, "w", **profile) as dst:  # three bands where one is expected
        dst.write(np.stack([arr] * 3))
    (scenes / "scene01" / "imgs_2" / "scene01_B03.tif").write_bytes(b"II*\x00 this is not a tiff")
    (scenes / "scene02" / "cm" / "scene02-cm.tif").unlink()
    out = hearth("data", "import-geotiff", str(scenes), ws=workspace).stdout
    lines = [x for x in out.splitlines() if x.startswith("skipped")]
    assert len(lines) == 3
    assert "scene00/imgs_1/scene00_B08.tif: has 3 bands, expected 1" in lines[0]
    assert "scene01/imgs_2/scene01_B03.tif: not a readable GeoTIFF" in lines[1]
    assert "scene02/cm/scene02-cm.tif: change mask missing" in lines[2]
    assert "10 raster items imported" in out
    catalog, _ = _open(workspace)
    with catalog.session() as s:
        assert {i.meta["scene"] for i in s.scalars(select(Item))} == {"scene03"}


def test_nothing_half_written_when_storing_fails(scenes: Path, workspace: Path, monkeypatch):
    catalog, store = _open(workspace)
    calls = {"n": 0}
    real_put = ContentStore.put

    def failing_put(self, data):
        calls["n"] += 1
        if calls["n"] == 7:
            raise OSError("disk full")
        return real_put(self, data)

    monkeypatch.setattr(ContentStore, "put", failing_put)
    with pytest.raises(OSError):
        import_geotiff_folder(catalog, store, scenes)
    with catalog.session() as s:
        assert s.scalar(select(func.count(Item.id))) == 0
        assert s.scalar(select(func.count(Collection.id))) == 0


def test_oscd_terms_recorded_and_commercial_request_excluded(scenes: Path, workspace: Path):
    (scenes / "archive.yaml").unlink()  # no archive.yaml: the folder is taken as OSCD, with its published terms
    for cm in scenes.glob("*/cm/*-cm.tif"):  # OSCD's .tif masks say 1 = no change, 2 = change
        with rasterio.open(cm) as ds:
            profile, arr = ds.profile, ds.read(1)
        with rasterio.open(cm, "w", **profile) as dst:
            dst.write(arr + 1, 1)
    shutil.rmtree(scenes / "scene03" / "lc")
    for d in scenes.glob("*/lc"):
        shutil.rmtree(d)  # OSCD has no land-cover maps
    out = hearth("data", "import-geotiff", str(scenes), "--layout", "oscd", ws=workspace).stdout
    assert "CC BY-NC-SA" in out and "Caye Daudt" in out and "bc:non_commercial" in out
    catalog, _ = _open(workspace)
    with catalog.session() as s:
        coll = s.scalar(select(Collection).where(Collection.name == "oscd"))
        assert "non-commercial" in coll.licence and "IGARSS 2018" in coll.citation
        keys = {lab.key for lab in s.scalars(select(Label).where(Label.collection_id == coll.id))}
        assert keys == {"bc:non_commercial", "bc:provenance"}
        mask = s.scalar(select(Item).where(Item.external_id == "scene00/cm"))
        assert mask.meta["change_value"] == 2
    commercial = compute_manifest(catalog, Request("commercial", "acme", ("oscd",), date.today().isoformat()))
    assert not commercial.included and len(commercial.excluded) == 36
    assert {e["rule"] for e in commercial.excluded} == {"bc:non_commercial"}
    assert "does not allow commercial use" in commercial.excluded[0]["reason"]
    research = compute_manifest(catalog, Request("research", "uni", ("oscd",), date.today().isoformat()))
    assert len(research.included) == 36 and "bc:non_commercial" in research.restrictions
    assert any("IGARSS 2018" in a for a in research.attribution)
