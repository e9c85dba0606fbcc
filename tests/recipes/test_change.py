"""The change recipe end to end: import, governed training under torchrun, threshold on validation, F1/IoU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hearthkit.recipes.change.model import ChangeConfig, SiamUNet
from hearthkit.recipes.change.recipe import change_loss
from tests.conftest import GEO_TEST_SCENES


def test_change_trains_end_to_end_and_scores_held_out_scenes(trained_change: Path):
    model_dir = trained_change / "models" / "test-change"
    ev = json.loads((model_dir / "evaluation.json").read_text())
    overall = next(r for r in ev["rows"] if r["by"] == "overall")
    assert overall["n"] == len(GEO_TEST_SCENES)
    assert overall["f1"] > 0.8 and overall["iou"] > 0.65  # inserted clearings / new water are clear-cut
    assert sorted(r["group"] for r in ev["rows"] if r["by"] == "scene") == GEO_TEST_SCENES
    card = (model_dir / "model_card.md").read_text()
    assert "| F1 | 95% CI" in card and "no held-out scene seen in training" in card
    # the threshold was chosen on the training scenes' validation strips, never on held-out scenes
    run = trained_change / "runs" / "test-change"
    th = json.loads((run / "prep" / "threshold.json").read_text())
    assert 0.05 <= th["threshold"] <= 0.95 and round(th["validation_f1"], 4) == max(th["curve"].values())
    assert json.loads((model_dir / "prep" / "threshold.json").read_text()) == th
    manifest = json.loads((run / "manifest.json").read_text())
    scene_of = {e["item_id"]: e["meta"]["scene"] for e in manifest["included"]}

    def scenes_read(log: str) -> set[str]:
        return {scene_of[json.loads(x)["item_id"]] for x in (run / "access" / log).read_text().splitlines()}

    assert scenes_read("calibrate.jsonl").isdisjoint(GEO_TEST_SCENES)
    assert scenes_read("rank0.jsonl").isdisjoint(GEO_TEST_SCENES)
    assert scenes_read("eval.jsonl") == set(GEO_TEST_SCENES)


def test_fusions_shapes_and_imbalanced_loss():
    x1, x2 = torch.randn(2, 4, 32, 32), torch.randn(2, 4, 32, 32)
    for fusion in ("diff", "concat"):
        net = SiamUNet(ChangeConfig(width=4, depth=3, fusion=fusion))
        assert net(x1, x2).shape == (2, 1, 32, 32)
    diff = SiamUNet(ChangeConfig(width=4, depth=3, fusion="diff"))
    assert torch.allclose(diff.eval()(x1, x1), diff(x1 + 0, x1))  # identical dates: the same, symmetric input
    y = torch.zeros(1, 32, 32)
    y[0, :2, :2] = 1  # 0.4 % changed
    valid = torch.ones_like(y)
    all_no = torch.full_like(y, -6.0)  # "nothing changed" is 99.6 % right per pixel, yet must cost a lot
    right = torch.where(y > 0, 6.0, -6.0)
    assert change_loss(all_no, y, valid, 3.0, 1.0) > 4 * change_loss(right, y, valid, 3.0, 1.0)


def test_card_lists_per_city_f1_with_the_best_worst_gap_and_calibration_is_fitted(trained_change: Path):
    card = (trained_change / "models" / "test-change" / "model_card.md").read_text()
    for name in GEO_TEST_SCENES:
        assert f"| scene | {name} |" in card
    assert "Gap between best and worst group: scene: F1" in card
    th = json.loads((trained_change / "runs" / "test-change" / "prep" / "threshold.json").read_text())
    cal = th["calibration"]
    assert cal["method"] == "platt" and cal["fitted_on_pixels"] > 0 and cal["a"] > 0
    # the scene-wide relative area error: measured over the strips, or 1.0 (wide) with too few to measure
    rel = cal["area_rel_errors"]
    assert cal["area_rel_sd"] == (pytest.approx(np.sqrt(np.mean(np.square(rel)))) if len(rel) >= 2 else 1.0)
    assert cal["ece_after"] <= cal["ece_before"] + 1e-3  # fitted on these pixels: never worse there
    assert sum(b["n"] for b in cal["reliability_after"]) == cal["fitted_on_pixels"]


def test_test_time_augmentation_undoes_each_transform():
    from hearthkit.recipes.change.recipe import forward_tta

    class PixelDiff(torch.nn.Module):  # commutes with flips and rotations: TTA must give back the same map
        def forward(self, a, b):
            return (a - b).abs().sum(1, keepdim=True) - 1

    x1, x2 = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 16, 16)
    plain = torch.sigmoid(PixelDiff()(x1, x2))
    for n in (2, 4, 8):
        assert torch.allclose(forward_tta(PixelDiff(), x1, x2, n), plain, atol=1e-6)
    net = SiamUNet(ChangeConfig(width=4, depth=3)).eval()
    assert torch.allclose(forward_tta(net, x1, x2, 1), torch.sigmoid(net(x1, x2)))


def _scene_from_arrays(before: np.ndarray, after: np.ndarray):
    """A geo.Scene over in-memory GeoTIFFs (one 4-band file per date)."""
    from rasterio.io import MemoryFile
    from rasterio.transform import from_origin

    from hearthkit.data import geo

    layers = []
    for arr in (before, after):
        mem = MemoryFile()
        with mem.open(driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=4, dtype="float32",
                      crs="EPSG:32633", transform=from_origin(500000, 4000000, 10, 10)) as ds:
            ds.write(arr.astype(np.float32))
        ds = geo.open_bytes(mem.read())
        layers.append([(ds, i + 1) for i in range(4)])
    return geo.Scene("mem", layers[0], layers[1])


def test_per_date_standardisation_ignores_a_gain_and_offset_between_dates():
    from hearthkit.recipes.change.recipe import predict_tiles

    rng = np.random.default_rng(0)
    before = rng.normal(1000, 200, (4, 32, 32))
    after = before + rng.normal(0, 20, before.shape)
    cfg = ChangeConfig(width=4, depth=3, patch=16, tile=16, margin=0, normalise="per_date")
    torch.manual_seed(0)
    net = SiamUNet(cfg)
    stats = {"mean": [1000.0] * 4, "std": [200.0] * 4}

    def probs(b, a, mode):
        return np.concatenate([p.ravel() for _, p, _ in predict_tiles(net, _scene_from_arrays(b, a), stats, cfg,
                                                                        normalise=mode)])

    same = probs(before, after, "per_date")
    brighter = probs(before, 1.7 * after + 300, "per_date")  # another sensor gain / illumination on date 2
    assert np.allclose(same, brighter, atol=1e-4)
    assert np.abs(same - probs(before, 1.7 * after + 300, "training")).max() > 1e-2  # training scaling: it shows


def test_histogram_matching_maps_the_after_date_onto_the_before_date_and_keeps_absolute_brightness():
    from hearthkit.recipes.change.recipe import match_after, match_table, predict_tiles

    rng = np.random.default_rng(1)
    before = rng.gamma(4.0, 250.0, (4, 32, 32))  # skewed like reflectances
    after = before + rng.normal(0, 20, before.shape)
    seasonal = np.sqrt(after) * 40 + 100  # another season/illumination: monotone, non-linear, per band the same
    table = match_table(_scene_from_arrays(before, seasonal))
    assert table.shape == (2, 4, 1024)
    matched = match_after(seasonal.astype(np.float32), table)
    assert np.abs(np.quantile(matched, [0.1, 0.5, 0.9]) - np.quantile(before, [0.1, 0.5, 0.9])).max() < 1.0
    cfg = ChangeConfig(width=4, depth=3, patch=16, tile=16, margin=0, normalise="match")

    class PixelDiff(torch.nn.Module):  # an untrained U-Net barely reacts to its input; this model shows it all
        def forward(self, a, b):
            return (a - b).abs().sum(1, keepdim=True) - 1

    net = PixelDiff()
    stats = {"mean": [1000.0] * 4, "std": [500.0] * 4}

    def probs(b, a, mode=None):
        return np.concatenate([p.ravel() for _, p, _ in predict_tiles(net, _scene_from_arrays(b, a), stats, cfg,
                                                                        normalise=mode)])

    assert np.abs(probs(before, after) - probs(before, seasonal)).mean() < 0.02  # the season no longer shows
    assert np.abs(probs(before, after, "training") - probs(before, seasonal, "training")).mean() > 0.1
    # unlike per-date standardisation, a brighter place (both dates) still reaches the model as brighter
    bright = _scene_from_arrays(2 * before + 500, 2 * after + 500)
    brighter = match_after(np.float32(2 * after + 500), match_table(bright))
    assert np.abs(np.quantile(brighter, 0.5) - 2 * np.quantile(before, 0.5) - 500) < 5.0


def test_focal_loss_weighs_easy_pixels_less_than_hard_ones():
    y = torch.zeros(1, 8, 8)
    y[0, 0, 0] = 1
    valid = torch.ones_like(y)
    easy = torch.where(y > 0, 4.0, -4.0)  # every pixel right and sure
    hard = easy.clone()
    hard[0, 0, 0] = -4.0  # the one changed pixel missed
    bce = [change_loss(x, y, valid, 2.0, 0.0) for x in (easy, hard)]
    focal = [change_loss(x, y, valid, 2.0, 0.0, focal_gamma=2.0) for x in (easy, hard)]
    assert focal[0] < bce[0] / 100  # sure, right pixels barely count
    assert focal[1] / focal[0] > 10 * bce[1] / bce[0]  # so the one miss dominates the focal loss far more
    assert torch.allclose(change_loss(hard, y, valid, 2.0, 0.0, focal_gamma=0.0), bce[1])  # gamma 0: plain BCE
