"""The landcover recipe: per-pixel segmentation (U-Net) or patch classification (CNN) of land-cover classes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rasterio.windows import Window
from torch import nn

from hearthkit.data import geo
from hearthkit.errors import HearthError
from hearthkit.recipes.base import Recipe
from hearthkit.recipes.change.model import Decoder, Encoder
from hearthkit.recipes.eo_backbone import BackboneHooks

IGNORE = -1  # label of pixels outside the scene


class LandcoverConfig(BaseModel):
    """Land-cover model: task, network size, patches, inference tiles."""

    model_config = ConfigDict(extra="forbid")
    task: Literal["segmentation", "classification"] = Field("segmentation", description="A class per pixel "
                                                            "(U-Net) or one class per patch (majority class).")
    bands: list[str] = Field(["B02", "B03", "B04", "B08"], description="Band names read, in order.")
    width: int = Field(16, gt=0, description="Channels of the first stage (doubled per stage).")
    depth: int = Field(3, ge=2, le=5, description="Encoder stages.")
    patch: int = Field(48, ge=8, description="Patch side in pixels (segmentation: a multiple of 2^(depth-1)).")
    patches_per_epoch: int = Field(2048, gt=0, description="Random patches that make one pass of the sampler.")
    tile: int = Field(256, ge=16, description="Segmentation inference tile side in pixels.")
    margin: int = Field(16, ge=0, description="Context around each inference tile.")
    # --- pretrained backbone (issue 20): a registered transformers ResNet/ConvNeXt as the encoder ---
    base: str | None = Field(None, description="A registered base model (`hearth base add`): a transformers "
                             "ResNet or ConvNeXt folder whose stages replace the U-Net encoder (width and depth are "
                             "then the backbone's; patch must be a multiple of 32).")
    backbone_bands: list[str] | None = Field(None, description="With base: the names of the base's input channels "
                                             "in order, as model.bands names bands (e.g. [B04, B03, B02] for an RGB "
                                             "backbone; the 13 Sentinel-2 bands for a Sentinel-2 one). Default: "
                                             "model.bands, when the base has as many channels.")
    band_map: dict[str, str] = Field(default_factory=dict, description="With base: scene band -> the base channel "
                                     "whose first-layer weights it starts from, or 'mean' (their average). Default: "
                                     "the channel of the same name, else the mean.")

    @model_validator(mode="after")
    def _patch_fits_the_stages(self) -> LandcoverConfig:
        """Each U-Net stage halves the patch; the decoder's skips only line up when it halves evenly."""
        if self.task == "segmentation" and self.patch % stride_multiple(self):
            raise ValueError(f"patch {self.patch} must be a multiple of {stride_multiple(self)} for segmentation "
                             + ("with a backbone (its deepest stride)" if self.base else "(2^(depth-1))"))
        return self


def stride_multiple(cfg: LandcoverConfig) -> int:
    """What patches and inference tiles must be a multiple of: the deepest stage's stride."""
    from hearthkit.recipes.eo_backbone import STRIDE

    return STRIDE if cfg.base else 2 ** (cfg.depth - 1)


class UNet(nn.Module):
    """Encoder-decoder with skips: (B, C, H, W) -> (B, n_classes, H, W) logits."""

    def __init__(self, cfg: LandcoverConfig, n_classes: int):
        super().__init__()
        self.encoder = Encoder(len(cfg.bands), cfg.width, cfg.depth)
        self.decoder = Decoder(self.encoder.chans, 1, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class PatchClassifier(nn.Module):
    """Encoder, global average pool, linear: (B, C, H, W) -> (B, n_classes) logits."""

    def __init__(self, cfg: LandcoverConfig, n_classes: int):
        super().__init__()
        self.encoder = Encoder(len(cfg.bands), cfg.width, cfg.depth)
        self.head = nn.Linear(self.encoder.chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1].mean((2, 3)))  # (B, n_classes)


def majority(labels: np.ndarray, n_classes: int) -> int:
    """The most frequent valid class of a patch (IGNORE if none)."""
    v = labels[labels >= 0]
    return int(np.bincount(v, minlength=n_classes).argmax()) if v.size else IGNORE


class LandcoverPatches(torch.utils.data.Dataset):
    """Random patches of the date-1 image with their class map (or majority class); patch i fixed by (seed, i)."""

    def __init__(self, cfg: LandcoverConfig, prep: dict, scenes: list[geo.Scene], seed: int = 0):
        self.cfg, self.prep, self.scenes, self.seed = cfg, prep, scenes, seed
        area = np.array([s.shape[0] * s.shape[1] for s in scenes], float)
        self.weights = area / area.sum()

    def __len__(self) -> int:
        return self.cfg.patches_per_epoch

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        sc = self.scenes[int(rng.choice(len(self.scenes), p=self.weights))]
        w = geo.random_window(rng, *sc.shape, self.cfg.patch)
        w = Window(w.col_off, w.row_off, self.cfg.patch, self.cfg.patch)
        x, valid = sc.read_stack("before", w)
        y = np.where(valid, sc.read_labels("landcover", w), IGNORE)
        aug = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ())))
        x, y = geo.augment([geo.normalise(x, valid, self.prep["stats"]), y], aug)
        if self.cfg.task == "classification":
            y = np.array(majority(y, len(self.prep["classes"])))
        return {"x": torch.from_numpy(x), "y": torch.from_numpy(y)}


class LandcoverRecipe(BackboneHooks, Recipe):
    """Land-cover classes from multispectral tiles; scored by accuracy and mean IoU."""

    name = "landcover"
    ModelConfig = LandcoverConfig
    metric_names = ("accuracy", "miou")
    groups = ("scene",)

    def prepare(self, cfg: LandcoverConfig, train_entries: list[dict], out: Path, reader=None,
                manifest=None, parent=None) -> dict:
        scenes = geo.open_scenes(train_entries, reader, tuple(cfg.bands), need=("before", "landcover"))
        classes = next((e["meta"].get("classes") for e in train_entries
                        if (e.get("meta") or {}).get("role") == "landcover"), None)
        if not classes:
            raise HearthError("landcover items carry no class names; list them under `classes:` in archive.yaml")
        prep = {"bands": cfg.bands, "classes": classes, "stats": geo.band_stats(scenes, dates=("before",))}
        if parent is not None:  # its weights expect inputs scaled its way and output channels in its class order
            self.check_parent_shape(cfg, parent, ("task", "bands", "width", "depth", "base"))
            theirs = self.load_prep(parent / "prep")
            if classes != theirs["classes"]:
                raise HearthError(f"landcover classes {classes} differ from init_from model {parent.name}'s "
                                  f"{theirs['classes']}; import the same classes in that order, or start a new "
                                  "model (no init_from)")
            prep["stats"], prep["stats_from"] = theirs["stats"], parent.name
        if cfg.base:  # the backbone's config, its base (hash-checked) and the scene bands' mapping onto its channels
            from hearthkit.recipes.eo_backbone import prepare_backbone

            prep["backbone"] = prepare_backbone(cfg, out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "prep.json").write_text(json.dumps(prep, indent=1))
        return prep

    def load_prep(self, folder: Path) -> dict:
        return json.loads((folder / "prep.json").read_text())

    def build_model(self, cfg: LandcoverConfig, prep: dict) -> nn.Module:
        n = len(prep["classes"])
        if cfg.base:
            from hearthkit.recipes.eo_backbone import BackboneClassifier, BackboneUNet

            return (BackboneUNet if cfg.task == "segmentation" else BackboneClassifier)(prep["backbone"], n)
        return UNet(cfg, n) if cfg.task == "segmentation" else PatchClassifier(cfg, n)

    def dataset(self, cfg, prep, entries, reader, train):
        scenes = geo.open_scenes(entries, reader, tuple(cfg.bands), need=("before", "landcover"))
        return LandcoverPatches(cfg, prep, scenes)

    def collate(self, batch: list[dict]) -> dict:
        return {k: torch.stack([b[k] for b in batch]) for k in batch[0]}

    def loss(self, model, batch):
        logits = model(batch["x"])
        loss = F.cross_entropy(logits, batch["y"], ignore_index=IGNORE)
        return loss, {"samples": float(len(batch["x"])), "pixels": float(batch["x"][:, 0].numel())}

    @torch.no_grad()
    def scene_confusion(self, model, cfg: LandcoverConfig, prep: dict, sc: geo.Scene) -> np.ndarray:
        """(n_classes, n_classes) counts, rows = reference, columns = prediction, over one scene."""
        model.eval()
        n = len(prep["classes"])
        cm = np.zeros((n, n), np.int64)
        if cfg.task == "segmentation":
            for core, padded in geo.tiles_with_margin(*sc.shape, cfg.tile, cfg.margin, multiple=stride_multiple(cfg)):
                x, valid = sc.read_stack("before", padded)
                pred = model(torch.from_numpy(geo.normalise(x, valid, prep["stats"]))[None])[0].argmax(0).numpy()
                ref = sc.read_labels("landcover", core)
                ok = geo.crop(valid, core, padded)
                np.add.at(cm, (ref[ok], geo.crop(pred, core, padded)[ok]), 1)
            return cm
        p = cfg.patch
        wins = [Window(c, r, p, p) for r in range(0, sc.shape[0] - p + 1, p) for c in range(0, sc.shape[1] - p + 1, p)]
        for i in range(0, len(wins), 64):
            xs, refs = [], []
            for w in wins[i:i + 64]:
                x, valid = sc.read_stack("before", w)
                xs.append(geo.normalise(x, valid, prep["stats"]))
                refs.append(majority(sc.read_labels("landcover", w), n))
            pred = model(torch.from_numpy(np.stack(xs))).argmax(1).numpy()
            np.add.at(cm, (np.array(refs), pred), 1)
        return cm

    def evaluate(self, model, cfg, prep, entries, reader):
        records = []
        for sc in geo.open_scenes(entries, reader, tuple(cfg.bands), need=("before", "landcover")):
            cm = self.scene_confusion(model, cfg, prep, sc)
            records.append({"item_id": sc.meta["item_id"], "external_id": sc.name, "scene": sc.name,
                            "confusion": cm.tolist()})
        return records


RECIPE = LandcoverRecipe()
