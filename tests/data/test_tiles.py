"""The raster data layer: alignment of unequal pairs, training-only statistics, windows, patches, augmentation."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import from_bounds, from_origin

from hearthkit.data import geo
from hearthkit.demo.geo import make_geo_scenes, write_scene
from hearthkit.errors import HearthError


def _scene(folder: Path, name: str) -> geo.Scene:
    d = folder / name
    return geo.Scene(name, [rasterio.open(p) for p in sorted((d / "imgs_1").glob("*.tif"))],
                     [rasterio.open(p) for p in sorted((d / "imgs_2").glob("*.tif"))],
                     mask=rasterio.open(d / "cm" / f"{name}-cm.tif"))


def test_shifted_smaller_after_date_aligns_to_mask_grid(tmp_path: Path):
    write_scene(tmp_path / "full", "s", seed=5, size=64)
    write_scene(tmp_path / "cut", "s", seed=5, size=64, shrink_after=3)  # same content, date 2 cropped top-left
    full, cut = _scene(tmp_path / "full", "s"), _scene(tmp_path / "cut", "s")
    assert cut.after[0].shape == (61, 61) and cut.shape == (64, 64)
    win = geo.full_window(cut)
    a_full, v_full = full.read_stack("after", win)
    a_cut, v_cut = cut.read_stack("after", win)
    assert a_cut.shape == (4, 64, 64) and v_full.all()
    assert not v_cut[:3].any() and not v_cut[:, :3].any() and v_cut[3:, 3:].all()
    np.testing.assert_array_equal(a_cut[:, 3:, 3:], a_full[:, 3:, 3:])  # the same pixels land in the same place
    assert (cut.read_labels("mask", win) == full.read_labels("mask", win)).all()


def test_coarser_after_date_with_same_bounds_is_resampled_onto_the_grid(tmp_path: Path):
    write_scene(tmp_path, "s", seed=6, size=64)
    sc = _scene(tmp_path, "s")
    # Like OSCD's abudhabi: date 2 covers the same bounds with a few pixels fewer (slightly larger pixels).
    src = tmp_path / "s" / "imgs_2" / "s_B08.tif"
    with rasterio.open(src) as ds:
        small = ds.read(1, out_shape=(60, 60), resampling=Resampling.average)
        profile = dict(ds.profile, width=60, height=60, transform=from_bounds(*ds.bounds, 60, 60))
    coarse = tmp_path / "coarse_B08.tif"
    with rasterio.open(coarse, "w", **profile) as dst:
        dst.write(small, 1)
    aligned, valid = geo.read_on_grid(rasterio.open(coarse), sc.grid, geo.full_window(sc))
    truth, _ = geo.read_on_grid(rasterio.open(src), sc.grid, geo.full_window(sc))
    assert aligned.shape == (64, 64) and valid.all()
    assert np.corrcoef(aligned.ravel(), truth.ravel())[0, 1] > 0.9


def test_unreferenced_mask_of_other_size_is_refused(tmp_path: Path):
    write_scene(tmp_path, "s", seed=1, size=32)
    mask = tmp_path / "bad-cm.tif"
    with rasterio.open(mask, "w", driver="GTiff", width=30, height=32, count=1, dtype="uint8") as dst:
        dst.write(np.zeros((32, 30), np.uint8), 1)
    with pytest.raises(HearthError, match="without georeference"):
        geo.Scene("s", [rasterio.open(p) for p in sorted((tmp_path / "s" / "imgs_1").glob("*.tif"))],
                  mask=rasterio.open(mask))


def test_band_stats_come_from_the_scenes_given_and_normalise(tmp_path: Path):
    make_geo_scenes(tmp_path, n_scenes=3, size=48, seed=2)
    scenes = [_scene(tmp_path, f"scene0{i}") for i in range(3)]
    train_stats = geo.band_stats(scenes[:2])
    assert train_stats != geo.band_stats(scenes)  # a held-out scene would change them: only training ones count
    x, valid = scenes[0].read_stack("before", geo.full_window(scenes[0]))
    y, _ = scenes[1].read_stack("before", geo.full_window(scenes[1]))
    both = np.concatenate([geo.normalise(x, valid, train_stats), geo.normalise(y, valid, train_stats)], 1)
    b, _ = scenes[0].read_stack("after", geo.full_window(scenes[0]))
    assert np.abs(both.mean((1, 2))).max() < 0.5 and b.shape == x.shape


def test_windows_are_read_not_whole_scenes(tmp_path: Path):
    big = tmp_path / "big_B02.tif"
    h = w = 3072
    with rasterio.open(big, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=from_origin(500000, 6000000, 10, 10), tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate") as dst:
        for win in geo.blocks(h, w, 1024):
            dst.write(np.full((int(win.height), int(win.width)), 1000, np.uint16), 1, window=win)
    data = big.read_bytes()
    sc = geo.Scene("big", [geo.open_bytes(data)] * 4)
    tracemalloc.start()
    x, _ = sc.read_stack("before", geo.Window(1500, 2000, 64, 64))
    stats = geo.band_stats([sc], dates=("before",))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert x.shape == (4, 64, 64) and stats["mean"] == pytest.approx([1000.0] * 4)
    assert peak < (h * w * 4 * 4) / 4  # far below one decoded scene (4 bands, float32): ~150 MB


def test_tiles_partition_the_grid_and_sliding_windows_cover_it():
    cover = np.zeros((70, 100), int)
    for core, padded in geo.tiles_with_margin(70, 100, tile=32, margin=4, multiple=8):
        assert padded.width == padded.height == 40
        cover[int(core.row_off):int(core.row_off + core.height), int(core.col_off):int(core.col_off + core.width)] += 1
    assert (cover == 1).all()
    seen = np.zeros((70, 100), int)
    for win in geo.sliding_windows(70, 100, 32, 24):
        assert (win.width, win.height) == (32, 32)
        seen[int(win.row_off):int(win.row_off) + 32, int(win.col_off):int(win.col_off) + 32] = 1
    assert seen.all()


def test_augment_moves_image_and_mask_together():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(4, 16, 16)).astype(np.float32)
    mask = (img[3] > 0.5).astype(np.float32)
    for seed in range(8):
        a, m = geo.augment([img, mask], np.random.default_rng(seed))
        assert ((a[3] > 0.5) == (m > 0)).all()
    outs = {geo.augment([img], np.random.default_rng(s))[0].tobytes() for s in range(32)}
    assert len(outs) == 8  # four rotations x flip


def test_change_patches_are_deterministic_and_favour_change(tmp_path: Path):
    from hearthkit.recipes.change.model import ChangeConfig
    from hearthkit.recipes.change.recipe import ChangePatches

    make_geo_scenes(tmp_path, n_scenes=2, size=64, seed=4)
    scenes = [_scene(tmp_path, f"scene0{i}") for i in range(2)]
    cfg = ChangeConfig(patch=32, patches_per_epoch=40, pos_fraction=0.5)
    ds = ChangePatches(cfg, geo.band_stats(scenes), scenes)
    with_change = sum(float(ds[i]["mask"].sum()) > 0 for i in range(len(ds)))
    assert with_change >= 20
    a, b = ds[7], ds[7]
    assert a["x1"].shape == (4, 32, 32)
    assert sorted(a["x1"].flatten().tolist()) == sorted(b["x1"].flatten().tolist())  # same patch, maybe rotated
