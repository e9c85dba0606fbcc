"""A scene from another sensor in `hearth monitor` (issue 20 point 4): band mapping, per-scene standardisation,
a warning when the values do not look like the training scenes', and the figures' intervals (issue 24).

The Landsat TM-like scenes are generated: the synthetic Sentinel-2-like test scene's four bands rescaled to uint8
digital numbers and written as a 6-band ENVI file in TM's order (blue, green, red, NIR, SWIR1, SWIR2), with the
ENVI header's band names and wavelengths, as a TM product carries them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from hearthkit.data import geo
from hearthkit.errors import HearthError
from hearthkit.monitor.inputs import open_date, parse_bands, range_warnings, select_bands
from tests.conftest import GEO_TEST_SCENES, hearth

TM_WAVELENGTHS = [485, 560, 660, 830, 1650, 2215]
TM_NAMES = ["blue", "green", "red", "nir", "swir1", "swir2"]
PIXEL_HA = 10 * 10 / 1e4


def _tm_envi(src_dir: Path, dest: Path, lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> Path:
    """Date folder of B02/B03/B04/B08 GeoTIFFs -> one 6-band uint8 ENVI file (SWIR made from red and NIR)."""
    bands = []
    for b in ("B02", "B03", "B04", "B08"):
        with rasterio.open(next(src_dir.glob(f"*_{b}.tif"))) as ds:
            bands.append(ds.read(1).astype(np.float64))
            profile = {"crs": ds.crs, "transform": ds.transform, "width": ds.width, "height": ds.height}
    x = np.stack(bands + [0.6 * bands[2] + 0.4 * bands[3], 0.8 * bands[2]])
    lo = x.min((1, 2), keepdims=True) if lo is None else lo
    hi = x.max((1, 2), keepdims=True) if hi is None else hi
    dn = np.clip((x - lo) / (hi - lo) * 250, 0, 255).astype(np.uint8)
    with rasterio.open(dest, "w", driver="ENVI", count=6, dtype="uint8", **profile) as ds:
        ds.write(dn)
    hdr = dest.with_suffix(".hdr")  # as a TM product's header says them (GDAL reads both back)
    text = hdr.read_text().split("band names")[0]
    hdr.write_text(text + "band names = {" + ", ".join(TM_NAMES) + "}\nwavelength units = Nanometers\n"
                   "wavelength = {" + ", ".join(map(str, TM_WAVELENGTHS)) + "}\n")
    for aux in dest.parent.glob(dest.name + ".aux.xml"):
        aux.unlink()
    return dest


@pytest.fixture(scope="module")
def tm_scene(geo_scenes: Path, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tm")
    name = GEO_TEST_SCENES[0]
    _tm_envi(geo_scenes / name / "imgs_1", folder / "before.img")
    _tm_envi(geo_scenes / name / "imgs_2", folder / "after.img")
    return folder


def test_bands_chosen_by_number_name_or_wavelength(tm_scene: Path):
    model_bands = ["B02", "B03", "B04", "B08"]
    with rasterio.open(tm_scene / "before.img") as ds:
        assert ds.count == 6 and ds.dtypes[0] == "uint8"
        assert select_bands(ds, parse_bands("1,2,3,4"), model_bands, tm_scene) == [1, 2, 3, 4]
        assert select_bands(ds, parse_bands("blue, green,red,NIR"), model_bands, tm_scene) == [1, 2, 3, 4]
        assert select_bands(ds, ["wavelength"], model_bands, tm_scene) == [1, 2, 3, 4]  # nearest: 842 -> 830
        assert select_bands(ds, parse_bands("560nm,485nm,660nm,830nm"), model_bands, tm_scene) == [2, 1, 3, 4]
        for tokens, message in ((["1", "2", "3"], "3 given .* the model reads 4"),
                                (["1", "2", "3", "9"], "--bands 9: the file has bands 1 to 6"),
                                (["blue", "green", "red", "thermal"], "thermal: no band"),
                                (["1", "2", "3", "1200nm"], "no band within 60 nm of 1200nm")):
            with pytest.raises(HearthError, match=message):
                select_bands(ds, tokens, model_bands, tm_scene)
    with pytest.raises(HearthError, match="has 6 bands; the model reads 4 .* --bands"):
        open_date(tm_scene / "before.img", model_bands)
    layers = open_date(tm_scene / "before.img", model_bands, ["4", "3", "2", "1"])
    assert [band for _, band in layers] == [4, 3, 2, 1]
    with pytest.raises(HearthError, match="empty"):
        parse_bands(" , ")


def test_range_warning_names_the_bands_and_what_to_do(tm_scene: Path, geo_scenes: Path):
    bands = ["B02", "B03", "B04", "B08"]
    tm = geo.Scene("tm", open_date(tm_scene / "before.img", bands, ["1", "2", "3", "4"]),
                   open_date(tm_scene / "after.img", bands, ["1", "2", "3", "4"]))
    s2_dir = geo_scenes / GEO_TEST_SCENES[0]
    s2 = geo.Scene("s2", open_date(s2_dir / "imgs_1", bands), open_date(s2_dir / "imgs_2", bands))
    training = geo.band_stats([s2])  # stands in for the model's training statistics
    assert range_warnings(s2, training, bands, "training") == []
    warned = range_warnings(tm, training, bands, "training")
    assert len(warned) == 2 and warned[0].startswith("date 1: values outside the model's training range (B02 mean")
    assert "use --standardise scene" in warned[0]
    per_scene = range_warnings(tm, training, bands, "per_date")
    assert len(per_scene) == 2 and "standardised by its own statistics" in per_scene[1]


def test_monitor_on_a_landsat_like_envi_scene_with_band_mapping_and_scene_standardisation(
        trained_change: Path, tm_scene: Path, geo_scenes: Path, tmp_path: Path):
    name = GEO_TEST_SCENES[0]
    with rasterio.open(geo_scenes / name / "cm" / f"{name}-cm.tif") as ds:
        truth_ha = (ds.read(1) > 0).sum() * PIXEL_HA
    args = ["monitor", "test-change", "--before", str(tm_scene / "before.img"), "--after",
            str(tm_scene / "after.img"), "--territory", str(geo_scenes / name / f"{name}.geojson")]
    bad = hearth(*args, "--out", str(tmp_path / "bad"), ws=trained_change, check=False)
    assert bad.returncode != 0 and "has 6 bands; the model reads 4" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stdout + bad.stderr and not (tmp_path / "bad").exists()
    # (the warning with the model's own scaling is checked without a model run above: range_warnings)
    res = hearth(*args, "--bands", "wavelength", "--standardise", "scene", "--out", str(tmp_path / "scene"),
                 ws=trained_change)
    summary = json.loads((tmp_path / "scene" / "monitor.json").read_text())
    assert summary["standardise"] == "per_date" and "standardised by its own statistics" in summary["warnings"][0]
    whole = summary["territories"][0]
    assert abs(whole["changed_ha"] - truth_ha) <= 0.25 * truth_ha  # the change is still found on DNs
    lo, hi = whole["interval_ha"]
    assert lo <= whole["expected_changed_ha"] <= hi and whole["interval_level"] == 0.9
    assert summary["calibration"]["method"] == "platt" and 0 < summary["threshold"] < 1
    assert f"{lo:,.2f} – {hi:,.2f}" in res.stdout and "unsure (ha)" in res.stdout
    page = (tmp_path / "scene" / "report.html").read_text()
    assert "90% interval (ha)" in page and "Where the model is least sure" in page and "class=warn" in page
    for t in summary["territories"]:
        assert all(p["unsure_ha"] > 0 and "lat" in p for p in t["least_sure"])
