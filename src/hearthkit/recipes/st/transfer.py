"""e2e decoder from an mt model: its target vocabulary, embedding (= tied output projection), decoder layers."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from hearthkit.errors import HearthError
from hearthkit.recipes.mt.model import MTConfig

# Seq2Seq and SpeechTranslator name their target side alike, so these tensors carry over by name.
DECODER_PREFIXES = ("embed.", "decoder.", "dec_ln.")


def read_text_parent(folder: Path) -> MTConfig:
    """The text config of the mt model in FOLDER (an mt model from scratch, or an st cascade's text side)."""
    folder = Path(folder)
    need = [folder / "config.json", folder / "model.safetensors", folder / "prep" / "spm.model"]
    missing = [p.name for p in need if not p.is_file()]
    if missing:
        raise HearthError(f"model.decoder_from {folder}: not a published hearthkit mt model (missing "
                          f"{', '.join(missing)}); point it at a models/NAME folder of an mt or st cascade model")
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        model = cfg.get("model") or {}
        recipe = cfg.get("recipe")
    except (OSError, ValueError, AttributeError):
        raise HearthError(f"model.decoder_from {folder}: its config.json is not readable") from None
    if recipe == "st" and model.get("mode") == "cascade":
        model = model.get("text") or {}
    elif recipe != "mt":
        raise HearthError(f"model.decoder_from {folder}: a {recipe!r} model; the decoder starts from a text "
                          "translation model (recipe mt, or an st cascade)")
    try:
        tcfg = MTConfig.model_validate(model)
    except ValueError:
        raise HearthError(f"model.decoder_from {folder}: its model settings are not a readable mt config") from None
    if tcfg.base:
        raise HearthError(f"model.decoder_from {folder}: fine-tuned from a pretrained base ({tcfg.base}), whose "
                          "tokenizer is not a hearthkit vocabulary; use an mt model trained from scratch")
    return tcfg


def check_text_parent(text: MTConfig, folder: Path) -> MTConfig:
    """The parent's text config, after checking its width is the decoder's (its embeddings are copied whole)."""
    theirs = read_text_parent(folder)
    if theirs.d_model != text.d_model:
        raise HearthError(f"model.text.d_model: {text.d_model} here but {theirs.d_model} in decoder_from model "
                          f"{Path(folder).name}; use its width to start the decoder from it")
    return theirs


def decoder_from_parent(model: nn.Module, folder: Path) -> str:
    """Copy the mt model's target side into MODEL wherever name and shape match; say what was copied."""
    weights = load_file(str(Path(folder) / "model.safetensors"))
    own = model.state_dict()
    mine = [k for k in own if k.startswith(DECODER_PREFIXES)]
    same = {k: weights[k] for k in mine if k in weights and weights[k].shape == own[k].shape}
    model.load_state_dict(same, strict=False)
    return f"decoder: {len(same)}/{len(mine)} tensors from {Path(folder).name}"
