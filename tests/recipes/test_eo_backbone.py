"""Pretrained vision backbones for landcover and change, in process: band mapping, weights copied, Siamese sharing.

The bases are tiny random transformers ResNet/ConvNeXt folders built from a config (RGB: 3 input channels); a
BaseRef is made directly (registration and the torchrun run are in test_mt_hf_torchrun.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hearthkit.errors import HearthError
from hearthkit.lineage.base import BaseRef, check_base_folder, hash_base_folder
from hearthkit.recipes import eo_backbone as eb
from hearthkit.recipes.change.model import ChangeConfig
from hearthkit.recipes.change.recipe import RECIPE as CHANGE
from hearthkit.recipes.landcover.recipe import RECIPE as LANDCOVER
from hearthkit.recipes.landcover.recipe import LandcoverConfig
from tests.recipes.hf_bases import make_backbone

RGB = ["B04", "B03", "B02"]


def spec_for(kind: str, tmp: Path, monkeypatch, cfg) -> dict:
    """prepare_backbone on a tiny KIND base, the workspace lookup replaced by a BaseRef of the folder."""
    import hearthkit.recipes.hf as hf

    folder = make_backbone(kind, tmp / "base")
    ref = BaseRef("tiny", folder, hash_base_folder(folder), check_base_folder(folder), "MIT", "test", (), "none")
    monkeypatch.setattr(hf, "run_base", lambda name, out: ref)
    return eb.prepare_backbone(cfg, tmp / "prep")


def test_band_plan_maps_by_name_by_choice_or_to_the_mean():
    bands = ["B02", "B03", "B04", "B08"]
    assert eb.band_plan(bands, RGB, {}, 3, "b") == [2, 1, 0, None]  # NIR: a band the RGB base never saw
    assert eb.band_plan(bands, RGB, {"B08": "B04", "B02": "mean"}, 3, "b") == [None, 1, 0, 0]
    assert eb.band_plan(bands, None, {}, 4, "b") == [0, 1, 2, 3]  # as many channels: the same bands in order
    with pytest.raises(HearthError, match="takes 3 input channels and the scene 4 bands; name the base's"):
        eb.band_plan(bands, None, {}, 3, "b")
    with pytest.raises(HearthError, match="2 names but base b takes 3"):
        eb.band_plan(bands, ["B04", "B03"], {}, 3, "b")
    with pytest.raises(HearthError, match="'B11' is not one of model.bands"):
        eb.band_plan(bands, RGB, {"B11": "B04"}, 3, "b")
    with pytest.raises(HearthError, match="neither one of the base's channels"):
        eb.band_plan(bands, RGB, {"B08": "B8A"}, 3, "b")


@pytest.mark.parametrize("kind", ["resnet", "convnext"])
@torch.no_grad()
def test_landcover_backbone_copies_the_base_and_maps_its_first_convolution(kind, tmp_path, monkeypatch):
    cfg = LandcoverConfig(base="tiny", backbone_bands=RGB, patch=32)  # bands B02 B03 B04 B08
    spec = spec_for(kind, tmp_path, monkeypatch, cfg)
    assert spec["plan"] == [2, 1, 0, None] and spec["config"]["num_channels"] == 4
    model = LANDCOVER.build_model(cfg, {"classes": ["a", "b", "c"], "backbone": spec})
    LANDCOVER.initialise(model, cfg, {"backbone": spec})
    base = eb.backbone_class(kind, "tiny").from_pretrained(str(tmp_path / "base"), local_files_only=True)
    conv = eb.BACKBONES[kind][1] + ".weight"
    theirs, ours = base.state_dict(), model.encoder.hf.state_dict()
    for i, src in enumerate(spec["plan"]):
        want = theirs[conv][:, src] if src is not None else theirs[conv].mean(1)
        assert torch.equal(ours[conv][:, i], want)
    same = [k for k in theirs if k != conv and k in ours]
    assert len(same) > 10 and all(torch.equal(theirs[k], ours[k]) for k in same)
    x = torch.randn(2, 4, 64, 64)
    model.eval()
    assert model(x).shape == (2, 3, 64, 64)  # stride-4 decoder output upsampled to the input
    with pytest.raises(ValueError, match="multiple of 32"):
        LandcoverConfig(base="tiny", patch=48)


@torch.no_grad()
def test_change_backbone_is_one_encoder_for_both_dates(tmp_path, monkeypatch):
    cfg = ChangeConfig(base="tiny", backbone_bands=RGB, patch=32, fusion="diff")
    spec = spec_for("resnet", tmp_path, monkeypatch, cfg)
    model = CHANGE.build_model(cfg, {"backbone": spec})
    CHANGE.initialise(model, cfg, {"backbone": spec})
    model.eval()
    x1, x2 = torch.randn(2, 4, 64, 64), torch.randn(2, 4, 64, 64)
    out = model(x1, x2)
    assert out.shape == (2, 1, 64, 64)
    assert torch.equal(out, model(x2, x1))  # |f(a) - f(b)| with one shared encoder: the dates' order is irrelevant
    assert sum(1 for m in model.modules() if isinstance(m, eb.Backbone)) == 1
    loss, counts = CHANGE.loss(model, {"x1": x1, "x2": x2, "mask": torch.zeros(2, 64, 64),
                                       "valid": torch.ones(2, 64, 64)})
    assert loss.isfinite() and counts["samples"] == 2


def test_a_base_that_is_not_a_vision_backbone_is_refused(tmp_path, monkeypatch):
    import hearthkit.recipes.hf as hf
    from tests.recipes.hf_bases import make_base

    folder = make_base("byt5", tmp_path / "t5", [])
    ref = BaseRef("t5", folder, hash_base_folder(folder), check_base_folder(folder), "MIT", "test", (), "none")
    monkeypatch.setattr(hf, "run_base", lambda name, out: ref)
    with pytest.raises(HearthError, match="'t5' model is not a vision backbone"):
        eb.prepare_backbone(LandcoverConfig(base="t5", patch=32), tmp_path / "prep")
