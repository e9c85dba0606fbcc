"""`hearth monitor`: georeferenced outputs, hectares per territory against the inserted change, map and report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom

from hearthkit.monitor.mapping import CHANGE_RGB
from tests.conftest import GEO_TEST_SCENES, hearth

PIXEL_HA = 10 * 10 / 1e4


def test_monitor_writes_georeferenced_maps_figures_and_report(trained_change: Path, geo_scenes: Path,
                                                              tmp_path: Path):
    name = GEO_TEST_SCENES[0]
    scene = geo_scenes / name
    out = tmp_path / "maps"
    res = hearth("monitor", "test-change", "--before", str(scene / "imgs_1"), "--after", str(scene / "imgs_2"),
                 "--territory", str(scene / f"{name}.geojson"), "--out", str(out), ws=trained_change)
    assert "pixels/s" in res.stdout and "tiles" in res.stdout
    served = hearth("audit", "log", "--kind", "serve", ws=trained_change).stdout.splitlines()
    assert served and '"action": "monitor"' in served[-1] and '"model": "test-change"' in served[-1]
    assert '"pixels": ' in served[-1]  # counts, never the scenes
    with rasterio.open(scene / "imgs_1" / f"{name}_B02.tif") as src:
        crs, transform, shape = src.crs, src.transform, src.shape
    for f in ("change_probability.tif", "change.tif"):
        with rasterio.open(out / f) as ds:
            assert (ds.crs, ds.transform, ds.shape) == (crs, transform, shape)
    with rasterio.open(out / "change_probability.tif") as ds:
        prob = ds.read(1)
    assert prob.min() >= 0 and prob.max() <= 1
    with rasterio.open(scene / "cm" / f"{name}-cm.tif") as ds:
        truth = ds.read(1).astype(bool)
    geom = json.loads((scene / f"{name}.geojson").read_text())["features"][0]["geometry"]
    inside = geometry_mask([transform_geom("EPSG:4326", crs, geom)], out_shape=shape, transform=transform,
                           invert=True)
    summary = json.loads((out / "monitor.json").read_text())
    whole, terr = summary["territories"]
    assert whole["changed_ha"] == np.float64(whole["changed_ha"]) and terr["name"] == "territory"
    assert abs(whole["changed_ha"] - truth.sum() * PIXEL_HA) <= 0.05 * truth.sum() * PIXEL_HA
    true_in = (truth & inside).sum() * PIXEL_HA
    assert abs(terr["changed_ha"] - true_in) <= 0.05 * true_in
    assert abs(terr["area_ha"] - inside.sum() * PIXEL_HA) < 1e-6 * inside.sum()
    assert terr["percent_changed"] == pytest.approx(100 * terr["changed_ha"] / terr["area_ha"], rel=1e-12)

    png = np.asarray(Image.open(out / "map.png").convert("RGB"))
    x0, y0, x1, y1 = summary["map"]["box"]
    assert (x1 - x0, y1 - y0) == (512, 512) and png.shape[0] > y1 and png.shape[1] >= x1  # footer: legend, scale
    overlay = (png[y0:y1, x0:x1] == CHANGE_RGB).all(-1)
    zoom = summary["map"]["zoom"]
    expected = np.kron(truth, np.ones((zoom, zoom), bool))  # the true change, at map scale
    assert overlay.sum() > 0.9 * expected.sum()
    assert (overlay & expected).sum() > 0.9 * overlay.sum()  # overlay pixels sit where the changes are
    assert len(np.unique(png.reshape(-1, 3), axis=0)) > 50  # a real image under the overlay, not a blank
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and f"{terr['changed_ha']:,.2f}" in page and "change.tif" in page


def test_monitor_inputs_refuse_a_stack_with_the_wrong_bands(geo_scenes: Path):
    from hearthkit.errors import HearthError
    from hearthkit.monitor.inputs import open_date

    name = GEO_TEST_SCENES[1]
    one = geo_scenes / name / "imgs_1" / f"{name}_B02.tif"
    with pytest.raises(HearthError, match="has 1 bands; the model reads 4"):
        open_date(one, ["B02", "B03", "B04", "B08"])
    with pytest.raises(HearthError, match="no georeference"):
        open_date(geo_scenes / name / "cm" / f"{name}-cm.tif", ["B02"])
    layers = open_date(geo_scenes / name / "imgs_2", ["B02", "B03", "B04", "B08"])
    assert [ds.name.rsplit("_", 1)[1] for ds in layers] == ["B02.tif", "B03.tif", "B04.tif", "B08.tif"]
