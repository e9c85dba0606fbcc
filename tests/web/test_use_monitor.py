"""Monitor through the web: two uploaded multiband scenes -> the change map (PNG) and hectares, one serve event;
a corrupt scene is one clear 400 and no event."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from fastapi.testclient import TestClient

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.governance import audit, identity
from hearthkit.governance.stewardship import add_person
from hearthkit.web.app import create_app
from hearthkit.workspace import current_os_user, open_workspace
from tests.conftest import GEO_TEST_SCENES

BANDS = ("B02", "B03", "B04", "B08")


def _stack(folder: Path, name: str, out: Path) -> bytes:
    """One GeoTIFF with the four bands of FOLDER in the model's order (what a person would upload)."""
    layers = []
    for band in BANDS:
        with rasterio.open(folder / f"{name}_{band}.tif") as ds:
            layers.append(ds.read(1))
            profile = ds.profile
    profile.update(count=len(BANDS), dtype=str(layers[0].dtype))
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.stack(layers))
    return out.read_bytes()


@pytest.fixture
def client_token(trained_change: Path, tmp_path: Path):
    root = tmp_path / trained_change.name
    shutil.copytree(trained_change, root)
    keys = trained_change.parent / f"{trained_change.name}.keys"
    if keys.exists():
        shutil.copytree(keys, tmp_path / keys.name)
    ws = open_workspace(root)
    cat = open_workspace_catalog(ws)
    add_person(cat, "kaitiaki", "Demo River Nation", "member", owner=current_os_user())
    _, token = identity.create_token(cat, "kaitiaki", "maps", ["read", "monitor"])
    cat.close()
    app = create_app(ws, secret=b"w2-test-secret-" * 3)
    return app, TestClient(app), {"Authorization": f"Bearer {token}"}


def test_monitor_two_uploaded_scenes(client_token, geo_scenes: Path, tmp_path: Path):
    app, c, auth = client_token
    name = GEO_TEST_SCENES[0]
    scene = geo_scenes / name
    before = _stack(scene / "imgs_1", name, tmp_path / "before.tif")
    after = _stack(scene / "imgs_2", name, tmp_path / "after.tif")
    files = {"before": ("before.tif", io.BytesIO(before), "image/tiff"),
             "after": ("after.tif", io.BytesIO(after), "image/tiff"),
             "territory": ("t.geojson", io.BytesIO((scene / f"{name}.geojson").read_bytes()), "application/geo+json")}
    r = c.post("/api/v1/monitor?wait=true", data={"model": "test-change"}, files=files, headers=auth)
    assert r.status_code == 200, r.text
    doc = r.json()
    whole, terr = doc["result"]["territories"]
    assert whole["name"] == "whole scene" and terr["name"] == "territory" and whole["changed_ha"] > 0
    png = c.get(f"/api/v1/jobs/{doc['id']}/map.png", headers=auth)
    assert png.headers["content-type"] == "image/png" and png.content.startswith(b"\x89PNG")
    served = audit.events(app.state.catalog, "serve")
    assert [(e["actor"], e["data"]["action"]) for e in served][-1:] == [("kaitiaki", "monitor")]

    bad = {"before": ("before.tif", io.BytesIO(b"II*\x00 not really a tiff"), "image/tiff"),
           "after": ("after.tif", io.BytesIO(after), "image/tiff")}
    r = c.post("/api/v1/monitor?wait=true", data={"model": "test-change"}, files=bad, headers=auth)
    assert r.status_code == 400 and "not a readable GeoTIFF" in r.json()["error"] and "/tmp" not in r.json()["error"]
    assert len(audit.events(app.state.catalog, "serve")) == len(served)


def _shifted(geojson: dict, dlon: float) -> dict:
    """The territory moved DLON degrees east: off the scene altogether."""
    def move(c):
        return [c[0] + dlon, c[1]] if isinstance(c[0], int | float) else [move(x) for x in c]
    for f in geojson["features"]:
        f["geometry"]["coordinates"] = move(f["geometry"]["coordinates"])
        f["properties"]["name"] = "away"
    return geojson


def test_monitor_of_a_territory_off_the_scene_says_not_covered_with_an_interval_for_the_rest(
        client_token, geo_scenes: Path, tmp_path: Path):
    import json

    _, c, auth = client_token
    name = GEO_TEST_SCENES[0]
    scene = geo_scenes / name
    away = _shifted(json.loads((scene / f"{name}.geojson").read_text()), 0.5)
    files = {"before": ("before.tif", io.BytesIO(_stack(scene / "imgs_1", name, tmp_path / "b.tif")), "image/tiff"),
             "after": ("after.tif", io.BytesIO(_stack(scene / "imgs_2", name, tmp_path / "a.tif")), "image/tiff"),
             "territory": ("t.geojson", io.BytesIO(json.dumps(away).encode()), "application/geo+json")}
    r = c.post("/api/v1/monitor?wait=true", data={"model": "test-change"}, files=files, headers=auth)
    assert r.status_code == 200, r.text  # once a 500: NaN percent of an empty territory is not JSON
    whole, terr = r.json()["result"]["territories"]
    assert terr["covered_fraction"] == 0 and terr["percent_changed"] is None and terr["interval_ha"] is None
    assert any("'away': not covered" in w for w in r.json()["result"]["warnings"])
    assert c.get(f"/api/v1/jobs/{r.json()['id']}", headers=auth).status_code == 200
    page = c.get(f"/use/jobs/{r.json()['id']}", headers=auth).text
    lo, hi = whole["interval_ha"]
    assert f"{lo:.2f} – {hi:.2f}" in page and "not covered" in page  # the interval, as the HTML report shows it
