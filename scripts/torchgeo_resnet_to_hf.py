"""Convert torchgeo's Sentinel-2 ResNet weights to a transformers ResNet folder hearthkit can register as a base.

torchgeo's pretrained ResNets (e.g. ResNet50_Weights.SENTINEL2_ALL_MOCO, ResNet18_Weights.SENTINEL2_ALL_MOCO) are
timm/torchvision ResNets: their state dict maps to transformers' `ResNetModel` by key names alone (the layers and
their order are the same). torchgeo itself cannot be imported beside this project's CPU torch, so download the
weights file where torchgeo works (or from the URL in torchgeo's documentation) and convert it here, offline:

    python scripts/torchgeo_resnet_to_hf.py resnet50_sentinel2_all_moco.pth ./s2-resnet50 --bands S2
    hearth base add ./s2-resnet50 --name s2-resnet50-moco --licence CC-BY-4.0 --source "torchgeo …" --by STEWARD

The folder's hearthkit_bands.json names the input channels in order: use them as `model.backbone_bands`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import torch

# torchgeo's Sentinel-2 "ALL" weights take the 13 L1C bands in this order (SSL4EO-S12)
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
PREFIXES = ("module.", "backbone.", "model.", "encoder.")
_BLOCK = re.compile(r"layer(\d)\.(\d+)\.(conv|bn)(\d)\.(.+)")
_DOWN = re.compile(r"layer(\d)\.(\d+)\.downsample\.([01])\.(.+)")


def strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SD without a wrapper's common prefix (a Lightning module's `model.`, a DDP `module.`)."""
    for p in PREFIXES:
        if sd and all(k.startswith(p) for k in sd):
            return strip_prefix({k[len(p):]: v for k, v in sd.items()})
    return sd


def hf_key(key: str) -> str | None:
    """The transformers ResNetModel name of torchvision/timm ResNet tensor KEY (None: the classifier, dropped)."""
    if key.startswith("fc."):
        return None
    part = {"conv": "convolution", "bn": "normalization"}
    if key.startswith(("conv1.", "bn1.")):
        kind, rest = key.split(".", 1)
        return f"embedder.embedder.{part[kind[:-1]]}.{rest}"
    if m := _BLOCK.fullmatch(key):
        stage, block, kind, i, rest = m.groups()
        return f"encoder.stages.{int(stage) - 1}.layers.{block}.layer.{int(i) - 1}.{part[kind]}.{rest}"
    if m := _DOWN.fullmatch(key):
        stage, block, i, rest = m.groups()
        what = "convolution" if i == "0" else "normalization"
        return f"encoder.stages.{int(stage) - 1}.layers.{block}.shortcut.{what}.{rest}"
    raise ValueError(f"{key}: not a tensor of a torchvision/timm ResNet")


def infer_config(sd: dict[str, torch.Tensor]):
    """The ResNetConfig of state dict SD: basic or bottleneck blocks, blocks per stage, widths, input channels."""
    from transformers import ResNetConfig

    bottleneck = "layer1.0.conv3.weight" in sd
    depths = [1 + max(int(k.split(".")[1]) for k in sd if k.startswith(f"layer{s}.")) for s in range(1, 5)]
    last = "conv3" if bottleneck else "conv2"
    return ResNetConfig(num_channels=int(sd["conv1.weight"].shape[1]), embedding_size=int(sd["conv1.weight"].shape[0]),
                        hidden_sizes=[int(sd[f"layer{s}.0.{last}.weight"].shape[0]) for s in range(1, 5)],
                        depths=depths, layer_type="bottleneck" if bottleneck else "basic", hidden_act="relu",
                        downsample_in_first_stage=False, downsample_in_bottleneck=False)


def convert(sd: dict[str, torch.Tensor]):
    """(transformers ResNetModel with SD's weights, strictly loaded) of a torchvision/timm ResNet state dict."""
    from transformers import ResNetModel

    sd = strip_prefix(sd)
    mapped = {hf_key(k): v for k, v in sd.items() if hf_key(k) is not None}  # refuses a tensor of another layout
    model = ResNetModel(infer_config(sd))
    model.load_state_dict(mapped, strict=True)  # every tensor accounted for, both ways
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path, help="torchgeo/timm ResNet state dict (.pth), or a .safetensors file")
    ap.add_argument("out", type=Path, help="folder to write (config.json, model.safetensors, hearthkit_bands.json)")
    ap.add_argument("--bands", default="S2", help="input band names in order, comma-separated, or S2 for the 13 "
                                                   "Sentinel-2 bands B01…B12 with B8A (torchgeo's SENTINEL2_ALL)")
    args = ap.parse_args(argv)
    if args.weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        sd = load_file(str(args.weights))
    else:
        sd = torch.load(args.weights, map_location="cpu", weights_only=True)  # tensors only: no pickled code runs
        sd = sd.get("state_dict", sd)
    try:
        model = convert(sd)
    except (ValueError, KeyError, RuntimeError) as exc:
        print(f"{args.weights}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    bands = S2_BANDS if args.bands == "S2" else [b.strip() for b in args.bands.split(",")]
    if len(bands) != model.config.num_channels:
        print(f"--bands names {len(bands)} bands but the weights take {model.config.num_channels} channels",
              file=sys.stderr)
        return 1
    model.save_pretrained(str(args.out))
    (args.out / "hearthkit_bands.json").write_text(json.dumps({"backbone_bands": bands}, indent=1))
    print(f"wrote {args.out}: ResNet ({model.config.layer_type}, depths {model.config.depths}), "
          f"{model.config.num_channels} input bands; register it with `hearth base add {args.out} …`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
