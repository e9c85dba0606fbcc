"""Tiny, randomly initialised bases built offline from a config (no pretrained weights are reachable here).

Translation bases are saved as Hugging Face folders with a real tokenizer of their family: M2M100Tokenizer and
MBart50Tokenizer over a small sentencepiece model trained on TEXTS, ByT5Tokenizer (bytes, no vocabulary file).
The vision base is a transformers ResNet (an RGB backbone: 3 input channels).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # fairseq's order, which M2M-100 and mBART keep


def _pieces(texts: list[str], size: int = 60) -> list[tuple[str, float]]:
    """(piece, score) of a unigram sentencepiece model trained on TEXTS, its own control pieces left out."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=buf, vocab_size=size,
                                   model_type="unigram", hard_vocab_limit=False, minloglevel=2, num_threads=1)
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    return [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())
            if not (sp.is_control(i) or sp.is_unknown(i))], buf.getvalue()


def make_base(kind: str, folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A tiny KIND base (m2m100, mbart or byt5) in FOLDER: config.json, model.safetensors, tokenizer files."""
    import transformers as tf

    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    small = {"d_model": 16, "encoder_layers": 1, "decoder_layers": 1, "encoder_attention_heads": 2,
             "decoder_attention_heads": 2, "encoder_ffn_dim": 32, "decoder_ffn_dim": 32,
             "max_position_embeddings": 128, "dropout": 0.1}
    if kind == "m2m100":
        pieces, proto = _pieces(texts)
        (folder / "sentencepiece.bpe.model").write_bytes(proto)
        vocab = {p: i for i, p in enumerate(SPECIALS + [p for p, _ in pieces])}
        (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
        tok = tf.M2M100Tokenizer(str(folder / "vocab.json"), str(folder / "sentencepiece.bpe.model"))
        size = max(tok.lang_token_to_id.values()) + 1 + 8  # fairseq's made-up words follow the codes
        cfg = tf.M2M100Config(vocab_size=size, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                              decoder_start_token_id=2, **small)
        model = tf.M2M100ForConditionalGeneration(cfg)
    elif kind == "mbart":
        pieces, _ = _pieces(texts)
        tok = tf.MBart50Tokenizer(vocab=[(p, 0.0) for p in SPECIALS] + pieces)
        size = len(tok)
        cfg = tf.MBartConfig(vocab_size=size, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                             decoder_start_token_id=2, **small)
        model = tf.MBartForConditionalGeneration(cfg)
    elif kind == "byt5":
        tok = tf.ByT5Tokenizer()
        cfg = tf.T5Config(vocab_size=len(tok), d_model=16, d_kv=8, d_ff=32, num_layers=1, num_decoder_layers=1,
                          num_heads=2, dropout_rate=0.1, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
                          tie_word_embeddings=False, feed_forward_proj="gated-gelu")
        model = tf.T5ForConditionalGeneration(cfg)
    else:
        raise ValueError(kind)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    return folder


def make_backbone(kind: str, folder: Path, channels: int = 3, seed: int = 0) -> Path:
    """A tiny KIND (resnet or convnext) vision base in FOLDER with CHANNELS input channels."""
    import transformers as tf

    torch.manual_seed(seed)
    if kind == "resnet":
        cfg = tf.ResNetConfig(num_channels=channels, embedding_size=8, hidden_sizes=[8, 16, 16, 32],
                              depths=[1, 1, 1, 1], layer_type="basic")
        model = tf.ResNetModel(cfg)
    else:
        cfg = tf.ConvNextConfig(num_channels=channels, hidden_sizes=[8, 16, 16, 32], depths=[1, 1, 1, 1])
        model = tf.ConvNextModel(cfg)
    model.save_pretrained(str(folder))
    return folder
