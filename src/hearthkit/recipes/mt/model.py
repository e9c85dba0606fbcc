"""A pre-LayerNorm Transformer encoder-decoder with one shared, tied embedding (readable top to bottom).

Shapes: B batch, S source length, T target length, C d_model, H heads, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from hearthkit.engine.dropout import Dropout
from hearthkit.recipes.hf import LoraSettings


class MTConfig(BaseModel):
    """Model, vocabulary, data and decoding settings of the mt recipe."""

    model_config = ConfigDict(extra="forbid")
    pairs: list[str] = Field(["es-nah"], min_length=1,
                             description="Directions SRC-TGT to train, e.g. [es-nah] or several for one "
                                         "multilingual model; a target-language tag <2TGT> starts each source.")
    sample_temperature: float = Field(
        1.0, ge=1.0, description="Multilingual: directions are repeated so that each one's share of an epoch is "
        "proportional to (its pairs)^(1/T); 1 keeps the data's shares, 5 is close to uniform (small pairs "
        "seen more). The largest direction is never cut.")
    vocab_size: int = Field(4000, gt=8, description="Shared sentencepiece vocabulary size (all languages).")
    sp_model_type: Literal["unigram", "bpe"] = Field("unigram", description="sentencepiece model type: unigram or bpe.")
    d_model: int = Field(256, gt=0, description="Width of the model.")
    n_heads: int = Field(4, gt=0, description="Attention heads.")
    enc_layers: int = Field(3, gt=0, description="Encoder layers.")
    dec_layers: int = Field(3, gt=0, description="Decoder layers.")
    d_ff: int = Field(1024, gt=0, description="Feed-forward width.")
    dropout: float = Field(0.3, ge=0, lt=1, description="Dropout; high for tiny data.")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Label smoothing of the training loss.")
    max_tokens: int = Field(128, gt=4, description="Longest source/target in tokens, tag and end marks included.")
    long_pairs: Literal["drop", "cut"] = Field(
        "drop", description="Training pairs with a side longer than max_tokens: drop them (each side cut on its own "
        "no longer says what the other says, and teaches ending mid-sentence) or cut them. Input to translate "
        "is always cut.")
    subword_alpha: float = Field(
        0.0, ge=0, lt=1, description="Subword regularisation (Kudo 2018): each time a training pair is drawn its two "
        "sides are segmented afresh, sampled with this smoothing (unigram; for bpe it is the BPE-dropout rate). "
        "0.1 is a usual start; 0 always takes the best segmentation. Evaluation and translation never sample. "
        "Samples come from sentencepiece's own generator, so a resumed run draws other segmentations.")
    beam: int = Field(5, gt=0, description="Beam size at evaluation (1 = greedy).")
    length_penalty: float = Field(1.0, ge=0, description="GNMT length penalty alpha: ((5+len)/6)**alpha.")
    mbr: int = Field(0, ge=0, description="Minimum-Bayes-risk decoding: draw this many candidates and keep the one "
                     "with the highest mean chrF against the others (0 = off; the beam's best). Costs about MBR**2 "
                     "sentence-chrF calls per sentence.")
    mbr_epsilon: float = Field(0.0, ge=0, lt=1, description="Where MBR candidates come from: 0 = the n-best of a "
                               "beam of max(beam, mbr); above 0 = epsilon sampling (tokens of probability below it "
                               "are never drawn; 0.02 is a usual value).")
    mbr_beta: float = Field(2.0, gt=0, description="Beta of the MBR utility chrF: 2 = the chrF reported (recall "
                            "counts more, so longer candidates win); 1 weighs precision and recall alike.")
    mbr_seed: int = Field(0, description="Seed of the sampler when mbr_epsilon > 0: a translation is reproducible.")
    eval_batch: int = Field(32, gt=0, description="Sentences per decoding batch.")
    group_by: list[str] = Field(["direction", "domain", "variant", "document"],
                                description="Item metadata columns the evaluation is broken down by.")
    # --- pretrained bases (issue 20): M2M-100/NLLB, mBART-50, T5/mT5/ByT5 via transformers ---
    base: str | None = Field(None, description="A registered base model (`hearth base add`) to fine-tune instead "
                             "of training from scratch: M2M-100/NLLB, mBART-50 or T5/mT5/ByT5. Its tokenizer and "
                             "architecture replace vocab_size, sp_model_type, d_model, n_heads, enc_layers, "
                             "dec_layers, d_ff and dropout (which are then ignored).")
    lang_codes: dict[str, str] = Field(default_factory=dict, description="With base: the base's token for each "
                                       "language of `pairs`, e.g. {es: spa_Latn} for NLLB or {es: es_XX} for "
                                       "mBART; M2M-100's __es__ and T5 tags <2es> are found without it.")
    new_lang_init: str | dict[str, str] | None = Field(
        None, description="With base: a language the base knows whose code embedding starts each NEW language's "
        "code (one for all, e.g. es, or per language, e.g. {nah: es}). M2M-100/NLLB/mBART need it for a language "
        "they do not know; T5 tags start from the mean embedding without it.")
    lora: LoraSettings | None = Field(None, description="With base: low-rank adapters (peft) instead of full "
                                      "fine-tuning; the run stores adapter weights only, the base is read from its "
                                      "registered folder. T5 names its projections q and v (target_modules: [q, v]). "
                                      "The embeddings stay frozen: new language codes keep their starting values.")
    gradient_checkpointing: bool = Field(False, description="With base: recompute each block's activations in the "
                                         "backward pass (less memory, more compute).")

    @model_validator(mode="after")
    def _base_uses_its_tokenizer(self) -> MTConfig:
        """A base segments with its own tokenizer: sentencepiece sampling of hearthkit's vocabulary cannot apply."""
        if self.base and self.subword_alpha > 0:
            raise ValueError("subword_alpha applies to hearthkit's own vocabulary; with model.base the base's "
                             "tokenizer segments: set subword_alpha 0")
        return self

    @field_validator("pairs")
    @classmethod
    def _directions(cls, pairs: list[str]) -> list[str]:
        """Each direction reads SRC-TGT: the recipe tags sources with TGT and reads both sides by language."""
        for pair in pairs:
            parts = pair.split("-")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{pair!r} is not a direction SRC-TGT, e.g. es-nah")
        return pairs

    @model_validator(mode="after")
    def _heads_divide_width(self) -> MTConfig:
        """Each attention head takes an equal slice of d_model; a remainder would fail in the first worker."""
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of n_heads {self.n_heads}")
        return self


class Attention(nn.Module):
    """Multi-head attention; self-attention may keep a key/value cache for incremental decoding."""

    def __init__(self, cfg: MTConfig):
        super().__init__()
        assert cfg.d_model % cfg.n_heads == 0
        self.h, self.drop = cfg.n_heads, cfg.dropout
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, C = x.shape
        return x.view(B, L, self.h, C // self.h).transpose(1, 2)  # (B, H, L, C/H)

    def keys_values(self, mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.kv(mem).chunk(2, dim=-1)
        return self.split(k), self.split(v)

    def forward(self, x: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None = None,
                causal: bool = False) -> torch.Tensor:
        B, L, C = x.shape
        q = self.split(self.q(x))  # (B, H, L, C/H)
        k, v = kv  # (B, H, M, C/H)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                           dropout_p=self.drop if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, L, C))  # (B, L, C)


class FeedForward(nn.Sequential):
    def __init__(self, cfg: MTConfig):
        super().__init__(nn.Linear(cfg.d_model, cfg.d_ff), nn.GELU(), Dropout(cfg.dropout),
                         nn.Linear(cfg.d_ff, cfg.d_model))


class EncoderLayer(nn.Module):
    """Pre-LN: x + SelfAttn(LN(x)); x + FF(LN(x))."""

    def __init__(self, cfg: MTConfig):
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(cfg.d_model), Attention(cfg)
        self.ln2, self.ff = nn.LayerNorm(cfg.d_model), FeedForward(cfg)
        self.drop = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.drop(self.attn(h, self.attn.keys_values(h), mask=pad_mask))
        return x + self.drop(self.ff(self.ln2(x)))


class DecoderLayer(nn.Module):
    """Pre-LN: causal self-attention, cross-attention to the encoder, feed-forward."""

    def __init__(self, cfg: MTConfig):
        super().__init__()
        self.ln1, self.self_attn = nn.LayerNorm(cfg.d_model), Attention(cfg)
        self.ln2, self.cross = nn.LayerNorm(cfg.d_model), Attention(cfg)
        self.ln3, self.ff = nn.LayerNorm(cfg.d_model), FeedForward(cfg)
        self.drop = Dropout(cfg.dropout)

    def forward(self, y: torch.Tensor, mem_kv: tuple, mem_mask: torch.Tensor, cache: dict | None = None
                ) -> torch.Tensor:
        h = self.ln1(y)
        k, v = self.self_attn.keys_values(h)  # (B, H, t, C/H) for the new positions
        if cache is not None:  # incremental decoding: one new position attends to all earlier ones
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
            y = y + self.drop(self.self_attn(h, (k, v)))
        else:
            y = y + self.drop(self.self_attn(h, (k, v), causal=True))
        y = y + self.drop(self.cross(self.ln2(y), mem_kv, mask=mem_mask))
        return y + self.drop(self.ff(self.ln3(y)))


def sinusoids(n: int, d: int) -> torch.Tensor:
    """Fixed sinusoidal positions (no parameters to learn from tiny data)."""
    pos = torch.arange(n).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2) * (-math.log(10000.0) / d))
    pe = torch.zeros(n, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe  # (n, d)


class Seq2Seq(nn.Module):
    """Encoder-decoder with one embedding shared by source, target and the output projection."""

    def __init__(self, cfg: MTConfig, vocab: int, pad_id: int = 0):
        super().__init__()
        self.cfg, self.pad_id = cfg, pad_id
        self.embed = nn.Embedding(vocab, cfg.d_model, padding_idx=pad_id)
        nn.init.normal_(self.embed.weight, std=cfg.d_model ** -0.5)
        self.register_buffer("pos", sinusoids(cfg.max_tokens + 2, cfg.d_model), persistent=False)
        self.drop = Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.dec_layers))
        self.enc_ln, self.dec_ln = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)

    def _embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        x = self.embed(ids) * math.sqrt(self.cfg.d_model)  # (B, L, C)
        return self.drop(x + self.pos[offset:offset + ids.size(1)])

    def encode(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder states (B, S, C) and the attention mask (B, 1, 1, S) that hides source padding."""
        mask = (src != self.pad_id)[:, None, None, :]  # True = attend
        x = self._embed(src)
        for layer in self.encoder:
            x = layer(x, mask)
        return self.enc_ln(x), mask

    def logits(self, y: torch.Tensor) -> torch.Tensor:
        return self.dec_ln(y) @ self.embed.weight.T  # tied output projection: (B, T, V)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, T, V) of the next target token at every position of TGT_IN."""
        mem, mask = self.encode(src)
        y = self._embed(tgt_in)
        for layer in self.decoder:
            y = layer(y, layer.cross.keys_values(mem), mask)
        return self.logits(y)

    def start(self, src: torch.Tensor) -> dict:
        """Decoding state for SRC: cross-attention keys/values computed once, empty self-attention caches."""
        mem, mask = self.encode(src)
        return {"mem_kv": [layer.cross.keys_values(mem) for layer in self.decoder], "mask": mask,
                "caches": [{} for _ in self.decoder], "t": 0}

    def step(self, state: dict, last: torch.Tensor) -> torch.Tensor:
        """Log-probabilities (N, V) of the token after LAST (N,), advancing STATE by one position."""
        y = self._embed(last[:, None], offset=state["t"])  # (N, 1, C)
        for layer, kv, cache in zip(self.decoder, state["mem_kv"], state["caches"], strict=True):
            y = layer(y, kv, state["mask"], cache)
        state["t"] += 1
        return F.log_softmax(self.logits(y)[:, -1].float(), dim=-1)

    @staticmethod
    def reorder(state: dict, index: torch.Tensor) -> None:
        """Keep rows INDEX of every cached tensor (beams that survived, or sources expanded to beams)."""
        state["mem_kv"] = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state["mem_kv"]]
        state["mask"] = state["mask"].index_select(0, index)
        for c in state["caches"]:
            for key in list(c):
                c[key] = c[key].index_select(0, index)
