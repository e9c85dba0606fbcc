"""U-Net pieces and the Siamese change network (FC-Siam-diff / FC-Siam-conc, Caye Daudt et al. 2018)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv + BatchNorm + ReLU: the unit of every U-Net stage."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """DEPTH stages, each halving resolution and doubling channels; returns every stage's features."""

    def __init__(self, cin: int, width: int, depth: int):
        super().__init__()
        self.chans = [width * 2 ** i for i in range(depth)]
        self.stages = nn.ModuleList(conv_block(cin if i == 0 else self.chans[i - 1], c)
                                    for i, c in enumerate(self.chans))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))  # (B, chans[i], H / 2^i, W / 2^i)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    """Upsample from the deepest features, concatenating each stage's skip (of SKIP_MULT x its channels); BLOCK
    builds each stage's convolutions (BatchNorm here, GroupNorm over a pretrained backbone)."""

    def __init__(self, chans: list[int], skip_mult: int, n_out: int,
                 block: Callable[[int, int], nn.Module] = conv_block):
        super().__init__()
        self.ups, self.blocks = nn.ModuleList(), nn.ModuleList()
        prev = chans[-1] * skip_mult
        for c in reversed(chans[:-1]):
            self.ups.append(nn.ConvTranspose2d(prev, c, 2, stride=2))
            self.blocks.append(block(c + c * skip_mult, c))
            prev = c
        self.head = nn.Conv2d(prev, n_out, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        for up, block, skip in zip(self.ups, self.blocks, reversed(feats[:-1]), strict=True):
            x = block(torch.cat([up(x), skip], 1))  # (B, c, 2h, 2w)
        return self.head(x)  # (B, n_out, H, W)


class ChangeConfig(BaseModel):
    """Siamese U-Net for bi-temporal change masks, its patches, loss and tiled inference."""

    model_config = ConfigDict(extra="forbid")
    bands: list[str] = Field(["B02", "B03", "B04", "B08"], description="Band names read per date, in order.")
    width: int = Field(16, gt=0, description="Channels of the first encoder stage (doubled per stage).")
    depth: int = Field(3, ge=2, le=5, description="Encoder stages.")
    fusion: Literal["diff", "concat"] = Field("diff", description="Merge the two dates' features by |a-b| or "
                                                                  "concatenation.")
    patch: int = Field(64, ge=16, description="Training patch side in pixels (a multiple of 2^(depth-1)).")
    patches_per_epoch: int = Field(2048, gt=0, description="Random patches that make one pass of the sampler.")
    pos_fraction: float = Field(0.5, ge=0, le=1, description="Share of patches centred on a changed pixel.")
    pos_weight: float = Field(3.0, gt=0, description="BCE weight of changed pixels (heavy imbalance).")
    dice_weight: float = Field(1.0, ge=0, description="Weight of the Dice loss added to BCE.")
    loss: Literal["bce", "focal"] = Field("bce", description="Pixel loss beside Dice: weighted BCE, or focal "
                                          "(Lin et al. 2017): the weighted BCE of each pixel times (1 - p_t)^gamma, "
                                          "so the many easy unchanged pixels weigh less than the hard ones.")
    focal_gamma: float = Field(2.0, ge=0, description="With loss: focal, the focusing exponent gamma.")
    jitter: float = Field(0.0, ge=0, description="Std of a random per-date, per-band gain and offset (normalised "
                                                 "units) in training: robustness to illumination between dates.")
    val_fraction: float = Field(0.2, ge=0, lt=1, description="Bottom strip of each training scene kept out of "
                                                            "training to choose the threshold.")
    tile: int = Field(256, ge=16, multiple_of=16, description="Inference tile side (core) in pixels, a multiple of "
                      "16: `hearth monitor`'s 16 x 16-pixel uncertainty cells must not straddle two tiles.")
    margin: int = Field(16, ge=0, description="Context added around each inference tile, then cropped.")
    # --- issue 24: radiometry between dates, test-time augmentation ---
    normalise: Literal["training", "per_date", "match"] = Field(
        "training", description="Scale inputs by the training scenes' band statistics; or each date by its own "
                                "(per band, over the scene): removes date-to-date gain and offset differences; or "
                                "'match': histogram-match the after date to the before date per band over the "
                                "scene (label-free relative radiometric normalisation), then the training "
                                "statistics.")
    tta: Literal[1, 2, 4, 8] = Field(1, description="Test-time augmentation: average the change probability over "
                                                   "this many flips/90-degree rotations of each tile.")
    # --- issue 20: a registered pretrained backbone as the shared (Siamese) encoder of both dates ---
    base: str | None = Field(None, description="A registered base model (`hearth base add`): a transformers ResNet "
                             "or ConvNeXt folder whose stages replace the U-Net encoder for both dates (width and "
                             "depth are then the backbone's; patch must be a multiple of 32).")
    backbone_bands: list[str] | None = Field(None, description="With base: the names of the base's input channels "
                                             "in order, as model.bands names bands (e.g. [B04, B03, B02] for an RGB "
                                             "backbone). Default: model.bands, when the base has as many channels.")
    band_map: dict[str, str] = Field(default_factory=dict, description="With base: scene band -> the base channel "
                                     "whose first-layer weights it starts from, or 'mean' (their average). Default: "
                                     "the channel of the same name, else the mean.")

    def stride_multiple(self) -> int:
        """What patches and inference tiles must be a multiple of: the deepest stage's stride."""
        return 32 if self.base else 2 ** (self.depth - 1)

    @model_validator(mode="after")
    def _patch_fits_the_stages(self) -> ChangeConfig:
        """Each stage halves the patch; the decoder's skips only line up when it halves evenly."""
        if self.patch % self.stride_multiple():
            raise ValueError(f"patch {self.patch} must be a multiple of {self.stride_multiple()} "
                             + ("(a backbone's deepest stride)" if self.base else "(2^(depth-1))"))
        return self


class SiamUNet(nn.Module):
    """One encoder applied to both dates (shared weights), fused per stage, one U-Net decoder."""

    def __init__(self, cfg: ChangeConfig):
        super().__init__()
        self.cfg = cfg  # self-describing: the loss reads its weights from here
        self.fusion = cfg.fusion
        self.encoder = Encoder(len(cfg.bands), cfg.width, cfg.depth)
        self.decoder = Decoder(self.encoder.chans, 2 if cfg.fusion == "concat" else 1, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.encoder(x1), self.encoder(x2)  # lists of (B, c_i, H_i, W_i)
        if self.fusion == "diff":
            fused = [torch.abs(a - b) for a, b in zip(f1, f2, strict=True)]
        else:
            fused = [torch.cat([a, b], 1) for a, b in zip(f1, f2, strict=True)]
        return self.decoder(fused)  # (B, 1, H, W) change logits
