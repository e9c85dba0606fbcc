"""Pretrained vision backbones (transformers ResNet / ConvNeXt, HF folders) as the encoder of landcover and change.

timm and torchgeo cannot be imported beside the CPU torch here (their torchvision wheels fail), so the backbone
is transformers' own `ResNetBackbone` / `ConvNextBackbone`, loaded offline from a registered base folder. Its four
stages (strides 4, 8, 16, 32) feed a U-Net decoder (GroupNorm blocks); the stride-4 output is upsampled to the
input. Band mapping: the first convolution is rebuilt for the scene's bands, each band starting from the base
channel of the same name (`model.backbone_bands` names the base's channels), from the one `model.band_map` names,
or from the mean of the base's channels (a band the base never saw, e.g. near-infrared for an RGB backbone).

Shapes: B batch, C bands, H x W pixels, c_i channels of stage i.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.errors import HearthError
from hearthkit.recipes.change.model import Decoder as UNetDecoder

# model_type -> (transformers backbone class, its first convolution's module path)
BACKBONES = {"resnet": ("ResNetBackbone", "embedder.embedder.convolution"),
             "convnext": ("ConvNextBackbone", "embeddings.patch_embeddings"),
             "convnextv2": ("ConvNextV2Backbone", "embeddings.patch_embeddings")}
STRIDE = 32  # the deepest stage's: patches and tiles are multiples of it
MEAN = "mean"


def backbone_class(model_type: str, base: str) -> Any:
    """The transformers backbone class of MODEL_TYPE; other architectures are refused in one line."""
    import transformers

    if model_type not in BACKBONES:
        raise HearthError(f"model.base {base}: a {model_type!r} model is not a vision backbone hearthkit can use "
                          f"here; register a transformers ResNet or ConvNeXt folder ({', '.join(BACKBONES)})")
    return getattr(transformers, BACKBONES[model_type][0])


def band_plan(bands: list[str], backbone_bands: list[str] | None, band_map: dict[str, str], n_channels: int,
              base: str) -> list[int | None]:
    """For each scene band, the base input channel its first-layer weights start from (None: the channels' mean)."""
    if backbone_bands is None:
        if n_channels != len(bands):
            raise HearthError(f"model.backbone_bands: base {base} takes {n_channels} input channels and the scene "
                              f"{len(bands)} bands; name the base's channels in order (e.g. [B04, B03, B02] for an "
                              "RGB backbone) so each band can be mapped")
        backbone_bands = list(bands)  # as many channels as bands: taken to be the same bands, in the same order
    if len(backbone_bands) != n_channels:
        raise HearthError(f"model.backbone_bands: {len(backbone_bands)} names but base {base} takes {n_channels} "
                          "input channels; name each of them once")
    for band, src in band_map.items():
        if band not in bands:
            raise HearthError(f"model.band_map: {band!r} is not one of model.bands {bands}")
        if src != MEAN and src not in backbone_bands:
            raise HearthError(f"model.band_map: {band} -> {src!r}, which is neither one of the base's channels "
                              f"{backbone_bands} nor 'mean'")
    plan: list[int | None] = []
    for band in bands:
        src = band_map.get(band, band if band in backbone_bands else MEAN)
        plan.append(None if src == MEAN else backbone_bands.index(src))
    return plan


def prepare_backbone(cfg: Any, out: Path) -> dict:
    """Resolve base CFG.base (hash-checked), record it, and the backbone config for the scene's bands, in OUT."""
    from transformers import AutoConfig

    from hearthkit.recipes.hf import BASE_CONFIG, run_base, save_base, set_offline

    set_offline()
    ref = run_base(cfg.base, out)
    cls = backbone_class(ref.architecture, ref.name)
    info = save_base(ref, out)
    config = AutoConfig.from_pretrained(str(out / BASE_CONFIG), local_files_only=True)
    plan = band_plan(list(cfg.bands), cfg.backbone_bands, dict(cfg.band_map), int(config.num_channels), ref.name)
    stages = [f"stage{i + 1}" for i in range(len(config.hidden_sizes))]
    own = cls.config_class.from_dict({**config.to_dict(), "num_channels": len(cfg.bands), "out_features": stages,
                                      "out_indices": None})
    return {"base": info, "plan": plan, "base_channels": int(config.num_channels), "config": own.to_dict()}


class Backbone(nn.Module):
    """The HF backbone built from the run's config: (B, C, H, W) -> every stage's features."""

    def __init__(self, spec: dict):
        from hearthkit.recipes.hf import set_offline

        super().__init__()
        set_offline()
        cls = backbone_class(spec["config"]["model_type"], spec["base"]["name"])
        self.hf = cls(cls.config_class.from_dict(spec["config"]))
        self.chans = list(self.hf.channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.hf(x).feature_maps)  # [(B, c_i, H / 2^(i+2), W / 2^(i+2))]


def _upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def gn_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv + GroupNorm + ReLU. GroupNorm, not BatchNorm: fine-tuning batches per rank are a few patches,
    whose batch statistics are noise, and GroupNorm keeps no running statistics that ranks could disagree on."""
    groups = max(g for g in (8, 4, 2, 1) if cout % g == 0)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(groups, cout),
                         nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, padding=1, bias=False),
                         nn.GroupNorm(groups, cout), nn.ReLU(inplace=True))


class Decoder(UNetDecoder):
    """The U-Net decoder over backbone stages with GroupNorm blocks (per-rank fine-tuning batches are a few
    patches; GroupNorm keeps no running statistics); output at the backbone's first stride (H / 4, W / 4)."""

    def __init__(self, chans: list[int], skip_mult: int, n_out: int):
        super().__init__(chans, skip_mult, n_out, block=gn_block)


class BackboneUNet(nn.Module):
    """Pretrained backbone + U-Net decoder: (B, C, H, W) -> (B, n_classes, H, W) logits."""

    def __init__(self, spec: dict, n_classes: int):
        super().__init__()
        self.encoder = Backbone(spec)
        self.decoder = Decoder(self.encoder.chans, 1, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _upsample(self.decoder(self.encoder(x)), x.shape[-2:])  # stride 4 -> full size


class BackboneClassifier(nn.Module):
    """Pretrained backbone, global average pool, linear: (B, C, H, W) -> (B, n_classes) logits."""

    def __init__(self, spec: dict, n_classes: int):
        super().__init__()
        self.encoder = Backbone(spec)
        self.head = nn.Linear(self.encoder.chans[-1], n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)[-1].mean((2, 3)))


class SiamBackbone(nn.Module):
    """One pretrained backbone applied to both dates (shared weights), fused per stage, one U-Net decoder."""

    def __init__(self, cfg: Any, spec: dict):
        super().__init__()
        self.cfg, self.fusion = cfg, cfg.fusion
        self.encoder = Backbone(spec)
        self.decoder = Decoder(self.encoder.chans, 2 if cfg.fusion == "concat" else 1, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        f1, f2 = self.encoder(x1), self.encoder(x2)
        if self.fusion == "diff":
            fused = [torch.abs(a - b) for a, b in zip(f1, f2, strict=True)]
        else:
            fused = [torch.cat([a, b], 1) for a, b in zip(f1, f2, strict=True)]
        return _upsample(self.decoder(fused), x1.shape[-2:])  # (B, 1, H, W) change logits


@torch.no_grad()
def initialise_backbone(model: nn.Module, spec: dict) -> str:
    """Copy the registered base's weights into MODEL's encoder, its first convolution mapped to the scene's bands."""
    from hearthkit.recipes.hf import check_base_unchanged

    info = spec["base"]
    path = check_base_unchanged(info)
    cls = backbone_class(spec["config"]["model_type"], info["name"])
    try:
        base = cls.from_pretrained(str(path), local_files_only=True, out_features=spec["config"]["out_features"])
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise HearthError(f"base model {info['name']}: {path} cannot be loaded offline as {cls.__name__} "
                          f"({str(exc).strip().splitlines()[0][:160]})") from None
    theirs = base.state_dict()
    conv = BACKBONES[spec["config"]["model_type"]][1] + ".weight"
    w = theirs[conv]  # (out, base channels, k, k)
    mean = w.mean(1)
    theirs[conv] = torch.stack([w[:, i] if i is not None else mean for i in spec["plan"]], 1)  # (out, C, k, k)
    own = model.encoder.hf.state_dict()
    take = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
    fresh = sorted(set(own) - set(take))
    if any("embed" in k or "encoder.stages" in k or "encoder.layer" in k for k in fresh):
        raise HearthError(f"base model {info['name']}: its weights do not fit the backbone built from its config "
                          f"({fresh[:2]} missing)")
    model.encoder.hf.load_state_dict(take, strict=False)
    mapped = sum(i is not None for i in spec["plan"])
    return (f"encoder initialised from base {info['name']} ({len(take)} tensors); first convolution: {mapped} "
            f"band(s) from the base's channels, {len(spec['plan']) - mapped} from their mean")


def export_backbone(model: nn.Module, out: Path) -> Path:
    """The encoder as an HF backbone folder (`from_pretrained` loads it); decoder or head in decoder.safetensors."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.encoder.hf.save_pretrained(str(out), safe_serialization=True)
    rest = {k: v.detach().contiguous() for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    save_file(rest, str(out / "decoder.safetensors"))
    (out / "hearthkit_head.json").write_text(json.dumps({
        "what": "decoder.safetensors holds hearthkit's U-Net decoder (recipes/eo_backbone.py Decoder) or linear "
                "head over this backbone's stage features; the stride-4 output is upsampled bilinearly to the input",
        "class": type(model).__name__}, indent=1), encoding="utf-8")
    return out


class BackboneHooks:
    """Recipe hooks shared by landcover and change for `model.base` (mixed in before Recipe)."""

    name: str

    def init_from_parent(self, model: nn.Module, parent_dir: Path, prep: dict) -> str:
        model.from_parent = True  # the base's weights must not overwrite the parent's in initialise
        return super().init_from_parent(model, parent_dir, prep)

    def initialise(self, model: nn.Module, cfg: Any, prep: dict) -> None:
        if cfg.base and not getattr(model, "from_parent", False):
            print(initialise_backbone(model, prep["backbone"]), flush=True)

    def export_hf(self, folder: Path, out: Path) -> None:
        """Published model FOLDER: its encoder as a transformers backbone folder, its decoder beside it."""
        from hearthkit.recipes.load import load_model_dir

        _, _, prep, model = load_model_dir(folder, self.name)
        if "backbone" not in prep:
            raise HearthError(f"{folder.name} has no pretrained backbone; `hearth export` writes it in hearthkit's "
                              "format")
        export_backbone(model, out)
