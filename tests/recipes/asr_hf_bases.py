"""Tiny randomly initialised speech bases in Hugging Face format, built locally (no weights are reachable here)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|es|>", "<|transcribe|>", "<|translate|>",
                    "<|notimestamps|>"]


def tiny_wav2vec2(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A wav2vec2-shaped CTC model (2 conv layers, 5 ms frames) with a feature extractor config, saved in FOLDER."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(seed)
    cfg = Wav2Vec2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                         intermediate_size=37 if hidden == 32 else 4 * hidden, conv_dim=(16, 16),
                         conv_stride=(10, 8), conv_kernel=(10, 8), num_feat_extract_layers=2, vocab_size=12,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                         do_stable_layer_norm=True, mask_time_prob=0.05, mask_time_length=2)
    Wav2Vec2ForCTC(cfg).save_pretrained(str(folder))
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=True).save_pretrained(str(folder))
    return folder


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet (Whisper's tokenizer works on it)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def tiny_whisper(folder: Path, d_model: int = 32, seed: int = 0) -> Path:
    """A Whisper-shaped model (2-s window, 40 mels) with a byte-level tokenizer and feature extractor in FOLDER."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    for s in WHISPER_SPECIALS:
        vocab[s] = len(vocab)
    src = folder / "_src"
    src.mkdir()
    (src / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (src / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tok = WhisperTokenizer(str(src / "vocab.json"), str(src / "merges.txt"), unk_token="<|endoftext|>",
                           bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tok.add_special_tokens({"additional_special_tokens": WHISPER_SPECIALS[1:]})
    tok.save_pretrained(str(folder))
    for f in src.iterdir():
        f.unlink()
    src.rmdir()
    torch.manual_seed(seed)
    eot = vocab["<|endoftext|>"]
    cfg = WhisperConfig(vocab_size=len(vocab), num_mel_bins=40, d_model=d_model, encoder_layers=2, decoder_layers=2,
                        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=2 * d_model,
                        decoder_ffn_dim=2 * d_model, max_source_positions=100, max_target_positions=128,
                        bos_token_id=eot, eos_token_id=eot, pad_token_id=eot,
                        decoder_start_token_id=vocab["<|startoftranscript|>"])
    WhisperForConditionalGeneration(cfg).save_pretrained(str(folder))
    WhisperFeatureExtractor(feature_size=40, chunk_length=2).save_pretrained(str(folder))
    return folder


def register(catalog, folder: Path, name: str, licence: str = "apache-2.0"):
    """Register FOLDER as base NAME by the workspace owner (training data declared: a random initialisation)."""
    from hearthkit.lineage.base import add_base

    return add_base(catalog, folder, name=name, licence=licence, source="built by the test from a config",
                    training_data="none: randomly initialised", by=None, owner="owner")
