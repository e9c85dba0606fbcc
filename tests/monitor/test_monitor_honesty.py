"""`hearth monitor` where something is missing or uncertain (issue 24 audit): no calibration or a failed one, no-data
pixels, territories partly or wholly outside the scene, the cell size actually used. The most restricted reading
applies: the wider interval and a warning, never a confident figure.

The model is a fixed pixel-difference network (not trained: this is about the figures, not the detector), run
in process on small generated GeoTIFFs; everything after the network is the monitor's own code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydantic
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.warp import transform_geom
from rasterio.windows import Window

from hearthkit.cli.monitor import territory_rows
from hearthkit.data import geo
from hearthkit.monitor.inputs import LoadedModel, open_date
from hearthkit.monitor.run import run_monitor
from hearthkit.recipes.change.model import ChangeConfig

BANDS = ["B02", "B03", "B04", "B08"]
SIZE = 64
CHANGED = (slice(8, 24), slice(8, 24))  # 256 pixels of real change
CRS = "EPSG:32633"


class PixelDiff(torch.nn.Module):
    """Change logit from the standardised difference of the dates: sure inside real change, unsure nowhere."""

    def forward(self, a, b):
        return 4 * ((a - b).abs().sum(1, keepdim=True) - 2)


def _write(path: Path, x: np.ndarray, pixel: float, nodata=None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=SIZE, height=SIZE, count=4, dtype=str(x.dtype), crs=CRS,
                       transform=from_origin(500000, 4000000, pixel, pixel), nodata=nodata) as ds:
        ds.write(x)
    return path


def _scene(tmp: Path, pixel: float = 10.0, nodata_block: bool = False) -> geo.Scene:
    rng = np.random.default_rng(0)
    before = rng.normal(1000, 50, (4, SIZE, SIZE))
    after = before + rng.normal(0, 10, before.shape)
    after[(slice(None), *CHANGED)] += 500
    nodata = None
    if nodata_block:  # date 2 has no data in a block: as different from date 1 as can be, yet not change
        after[:, 40:56, 40:56] = 0
        nodata = 0
    b = _write(tmp / "before.tif", before.astype(np.uint16), pixel)
    a = _write(tmp / "after.tif", after.astype(np.uint16), pixel, nodata)
    return geo.Scene("test", open_date(b, BANDS), open_date(a, BANDS))


def _model(cal: dict | None) -> LoadedModel:
    cfg = ChangeConfig(width=4, depth=3, patch=16, tile=32, margin=0)
    prep = {"bands": BANDS, "stats": {"mean": [1000.0] * 4, "std": [100.0] * 4}, "threshold": 0.5}
    if cal is not None:
        prep["calibration"] = cal
    return LoadedModel("pixel-diff", None, cfg, prep, PixelDiff(), [], [])


def _strict(path: Path) -> dict:
    """monitor.json parsed as strict JSON: NaN or Infinity fail."""
    def refuse(c):
        raise ValueError(f"{path}: {c} is not JSON")
    return json.loads(path.read_text(), parse_constant=refuse)


MEASURED = {"method": "platt", "a": 1.0001, "b": 0.0, "fitted": True, "area_rel_sd": 0.1, "area_abs_sd": 0.002}


def test_no_calibration_or_a_failed_fit_gives_the_widest_interval_and_says_so(tmp_path: Path):
    scene = _scene(tmp_path)
    runs = {name: run_monitor(_model(cal), scene, tmp_path / name) for name, cal in (
        ("measured", MEASURED), ("none", None), ("failed", {**MEASURED, "a": 1.0, "fitted": False}))}
    measured = runs["measured"]["territories"][0]
    lo, hi = measured["interval_ha"]
    assert 0 < lo < hi < measured["area_ha"] / 4 and not runs["measured"]["warnings"]  # says something
    for name in ("none", "failed"):
        whole = runs[name]["territories"][0]
        assert whole["interval_ha"] == [0.0, whole["area_ha"]]  # nothing measured: from none to all
        assert any("not calibrated" in w for w in runs[name]["warnings"])
        doc = _strict(tmp_path / name / "monitor.json")
        assert any("not calibrated" in w for w in doc["warnings"])
        page = (tmp_path / name / "report.html").read_text()
        assert "<b>not calibrated</b>" in page and "class=warn" in page
    assert runs["failed"]["calibration"]["fitted"] is False
    assert "its calibration fit failed" in (tmp_path / "failed" / "report.html").read_text()


def test_nodata_pixels_are_neither_change_nor_covered_area(tmp_path: Path):
    scene = _scene(tmp_path, nodata_block=True)
    summary = run_monitor(_model(MEASURED), scene, tmp_path / "out")
    whole = summary["territories"][0]
    assert whole["changed_pixels"] == 16 * 16  # the real change only, not the 16 x 16 no-data block
    assert whole["area_ha"] == pytest.approx((SIZE * SIZE - 16 * 16) * 100 / 1e4)
    assert whole["covered_fraction"] == pytest.approx(1 - 256 / SIZE ** 2)
    assert all(np.isfinite(whole["interval_ha"])) and np.isfinite(whole["expected_changed_ha"])
    assert any("has data on both dates" in w for w in summary["warnings"])
    with rasterio.open(tmp_path / "out" / "change.tif") as ds:
        binary = ds.read(1)
    assert (binary[40:56, 40:56] == 255).all() and (binary[CHANGED] == 1).all()
    # a float file's NaN is no data too, nodata declared or not
    x = np.ones((4, SIZE, SIZE), np.float32)
    x[:, :3] = np.nan
    ds = geo.open_bytes(_write(tmp_path / "nan.tif", x, 10.0).read_bytes())
    arr, valid = geo.read_on_grid(ds, scene.grid, Window(0, 0, 8, 8))
    assert not valid[:3].any() and valid[3:].all() and np.isfinite(arr).all()


def _polygon(c0: float, r0: float, c1: float, r1: float, name: str) -> dict:
    """A territory over pixel columns C0..C1 and rows R0..R1 of the test grid, in lon/lat as GeoJSON has it."""
    t = from_origin(500000, 4000000, 10, 10)
    ring = [t @ (c, r) for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))]
    geom = transform_geom(CRS, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]}, precision=10)
    return {"type": "Feature", "properties": {"name": name}, "geometry": geom}


def test_territories_partly_or_wholly_outside_the_scene_are_reported_as_such(tmp_path: Path):
    path = tmp_path / "lands.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _polygon(4, 4, 36, 36, "inside"), _polygon(48, 8, 80, 40, "half out"),
        _polygon(100, 8, 120, 40, "outside")]}))
    summary = run_monitor(_model(MEASURED), _scene(tmp_path), tmp_path / "out", path)
    _, inside, half, outside = summary["territories"]
    assert inside["covered_fraction"] > 0.99 and inside["polygon_ha"] == pytest.approx(32 * 32 * 100 / 1e4, rel=0.01)
    assert half["covered_fraction"] == pytest.approx(0.5, abs=0.02) and half["interval_ha"] is not None
    assert outside["covered_fraction"] == 0 and outside["polygon_ha"] > 0
    for key in ("changed_ha", "percent_changed", "expected_changed_ha", "interval_ha", "unsure_ha"):
        assert outside[key] is None, key  # no figure, never 0.00 - 0.00
    warned = " ".join(summary["warnings"])
    assert "'half out': only 50%" in warned and "'outside': not covered" in warned and "'inside'" not in warned
    doc = _strict(tmp_path / "out" / "monitor.json")
    assert doc["territories"][3]["percent_changed"] is None
    assert territory_rows(doc)[3][-2:] == ("not covered", "–")  # the CLI table
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<td>–</td><td>not covered</td>" in page and "not covered by the scene" in page


def test_the_cell_size_reported_is_the_one_used_in_pixels_and_metres(tmp_path: Path):
    summary = run_monitor(_model(MEASURED), _scene(tmp_path, pixel=20.0), tmp_path / "out")
    assert summary["cell"] == {"pixels": 16, "metres": 320.0}  # 16 pixels of 20 m, from the transform
    assert "16 x 16 pixel cells (about 320 m)" in (tmp_path / "out" / "report.html").read_text()
    with pytest.raises(pydantic.ValidationError, match="multiple of 16"):
        ChangeConfig(tile=24)  # a tile that would shrink the cells is refused where the model is configured
