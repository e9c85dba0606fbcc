"""The change recipe end to end: import, governed training under torchrun, threshold on validation, F1/IoU."""

from __future__ import annotations

import json
from pathlib import Path

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
