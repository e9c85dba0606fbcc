"""Transfer between languages: start from an earlier hearthkit speech model, re-make the output layer."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from hearthkit.errors import HearthError
from hearthkit.recipes.asr.model import ASRConfig
from hearthkit.recipes.asr.tokenizer import CharTokenizer, load_tokenizer

# Settings that decide the shapes of the encoder: parent and child must agree on them.
SHAPE_FIELDS = ("arch", "n_mels", "d_model", "heads", "ff_mult", "conv_kernel", "conv_channels", "hidden", "layers")


def read_parent(folder: Path) -> tuple[ASRConfig, CharTokenizer, dict[str, torch.Tensor]]:
    """Config, tokenizer and weights of the published model in FOLDER (models/NAME)."""
    folder = Path(folder)
    need = [folder / "config.json", folder / "model.safetensors", folder / "prep" / "tokenizer.json"]
    missing = [p.name for p in need if not p.is_file()]
    if missing:
        raise HearthError(f"model.init_from {folder}: not a published hearthkit model (missing {', '.join(missing)}); "
                          "point it at a models/NAME folder made by `hearth train`")
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if cfg.get("recipe") != "asr":
        raise HearthError(f"model.init_from {folder}: a {cfg.get('recipe')!r} model, not a speech (asr) model")
    pcfg = ASRConfig.model_validate({**cfg.get("model", {}), "init_from": None})
    return pcfg, load_tokenizer(folder / "prep" / "tokenizer.json"), load_file(str(folder / "model.safetensors"))


def check_parent(cfg: ASRConfig, folder: Path) -> ASRConfig:
    """The parent's config, after checking that its encoder has the shape CFG asks for."""
    pcfg, _, _ = read_parent(folder)
    diff = [f"{f}: parent {getattr(pcfg, f)} vs {getattr(cfg, f)}" for f in SHAPE_FIELDS
            if getattr(pcfg, f) != getattr(cfg, f) and not (f == "hidden" and cfg.arch == "conformer")
            and not (f in ("d_model", "heads", "ff_mult", "conv_kernel") and cfg.arch == "bigru")]
    if diff:
        raise HearthError(f"model.init_from {folder}: the encoder shape differs ({'; '.join(diff)}); "
                          "use the parent's model settings")
    return pcfg


def init_from_parent(model: nn.Module, cfg: ASRConfig, tok: CharTokenizer, folder: Path) -> dict:
    """Load the parent's encoder into MODEL; copy output rows of units both vocabularies share; return counts."""
    check_parent(cfg, folder)
    _, ptok, weights = read_parent(folder)
    state = model.state_dict()
    encoder = {k: v for k, v in weights.items() if not k.startswith("out.")}
    state.update(encoder)
    # Output layer: row 0 (blank) and the rows of units present in both inventories come from the parent;
    # units new to this language keep their fresh initialisation.
    w, b = state["out.weight"].clone(), state["out.bias"].clone()
    w[0], b[0] = weights["out.weight"][0], weights["out.bias"][0]
    parent_index = {ptok.piece(i): i for i in range(1, len(ptok) + 1)}
    shared = 0
    for i in range(1, len(tok) + 1):
        j = parent_index.get(tok.piece(i))
        if j is not None:
            w[i], b[i] = weights["out.weight"][j], weights["out.bias"][j]
            shared += 1
    state["out.weight"], state["out.bias"] = w, b
    model.load_state_dict(state)
    return {"encoder_tensors": len(encoder), "shared_units": shared, "new_units": len(tok) - shared}
