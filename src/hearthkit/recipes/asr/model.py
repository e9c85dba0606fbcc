"""CTC acoustic models on log-mel features: a Conformer (default) and the walking skeleton's BiGRU."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from hearthkit.engine.dropout import Dropout, dropout
from hearthkit.recipes.hf import LoraSettings


class AugmentConfig(BaseModel):
    """Training-time augmentation: speed perturbation on the waveform, SpecAugment on the features."""

    model_config = ConfigDict(extra="forbid")
    speed: list[float] = Field([0.9, 1.0, 1.1], description="Speed factors drawn uniformly per example "
                               "(resampling: tempo and pitch change together, as in Kaldi); [1.0] turns it off.")
    freq_masks: int = Field(2, ge=0, description="SpecAugment frequency masks per example.")
    freq_width: int = Field(15, ge=0, description="Largest frequency mask, in mel bins.")
    time_masks: int = Field(2, ge=0, description="SpecAugment time masks per example.")
    time_width: float = Field(0.05, ge=0, le=0.5, description="Largest time mask as a share of the example.")


class LMConfig(BaseModel):
    """Shallow fusion of a language model into beam search."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["none", "ngram", "plugin"] = Field(
        "none", description="none; ngram (a character n-gram fitted on the training transcripts); plugin "
        "(a registered scorer: `lm` fuses a character-level model of the lm recipe named by path).")
    order: int = Field(5, ge=1, le=10, description="n of the character n-gram.")
    weight: float = Field(0.3, ge=0, description="Weight of the LM log-probability in the beam score.")
    bonus: float = Field(0.5, description="Reward per emitted character (offsets the LM's pull to short output).")
    plugin: str | None = Field(None, description="Registered scorer name when kind is plugin.")
    path: str | None = Field(None, description="What the plugin scorer loads: for `lm`, a model name in "
                            "the workspace or a models/NAME folder.")


class DecodeConfig(BaseModel):
    """How evaluation and transcription turn per-frame probabilities into text."""

    model_config = ConfigDict(extra="forbid")
    beam: int = Field(1, ge=1, description="1 = greedy; more = CTC prefix beam search of this width "
                      "(the language model below is only used in beam search).")
    lm: LMConfig = LMConfig()


class ASRConfig(BaseModel):
    """Model shape, units, augmentation and decoding of the asr recipe."""

    model_config = ConfigDict(extra="forbid")
    arch: Literal["conformer", "bigru", "hf_ctc", "whisper"] = Field(
        "conformer", description="Encoder: conformer or bigru (trained from scratch); hf_ctc (a wav2vec2, HuBERT or "
        "WavLM base with a new CTC head) or whisper (sequence to sequence) fine-tune model.base; with model.base and "
        "arch left out, the base's architecture decides.")
    n_mels: int = Field(80, gt=0, description="Log-mel bins per frame.")
    units: Literal["char", "sentencepiece"] = Field("char", description="Output units.")
    sp_vocab: int = Field(200, ge=8, description="Sentencepiece vocabulary size when units is sentencepiece.")
    # conformer
    d_model: int = Field(144, gt=0, description="Conformer width.")
    heads: int = Field(4, gt=0, description="Attention heads (conformer).")
    ff_mult: int = Field(4, gt=0, description="Feed-forward expansion (conformer).")
    conv_kernel: int = Field(15, gt=0, description="Depthwise convolution kernel (conformer), in 40 ms frames.")
    # bigru (and the conformer's depth)
    conv_channels: int = Field(192, gt=0, description="Channels of the subsampling convolutions.")
    hidden: int = Field(192, gt=0, description="GRU hidden size per direction (bigru).")
    layers: int = Field(2, gt=0, description="Encoder layers (GRU layers or conformer blocks).")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout in the encoder.")
    spec_augment: bool = Field(True, description="Augment training examples (see augment).")
    augment: AugmentConfig = AugmentConfig()
    decode: DecodeConfig = DecodeConfig()
    init_from: str | None = Field(None, description="A models/NAME folder of an earlier hearthkit speech model to "
                                  "start from; its output layer is re-made for this character set.")
    # --- pretrained bases (issue 20): recipes/asr/hf_model.py
    base: str | None = Field(None, description="A registered base model (`hearth base list`) to fine-tune: "
                             "wav2vec2/XLS-R/MMS, HuBERT, WavLM (CTC over the run's characters) or Whisper.")
    freeze_feature_encoder: bool = Field(True, description="Keep the base's convolutional feature encoder fixed "
                                         "(hf_ctc), as wav2vec2 fine-tuning does.")
    mask_time_prob: float | None = Field(None, ge=0, le=1, description="SpecAugment time masking of a base model "
                                         "(its config's value when unset); spec_augment: false turns masking off.")
    mask_time_length: int | None = Field(None, gt=0, description="Frames per time mask (base model).")
    mask_feature_prob: float | None = Field(None, ge=0, le=1, description="SpecAugment feature masking (base model).")
    mask_feature_length: int | None = Field(None, gt=0, description="Channels per feature mask (base model).")
    adapter_attn_dim: int | None = Field(None, gt=0, description="MMS-style language adapters of this width in "
                                         "each wav2vec2 block; only they and the CTC head are trained.")
    language: str = Field("xx", pattern=r"^[A-Za-z0-9_-]{1,20}$", description="Whisper: the language token "
                          "<|language|> the decoder is prompted with (added to the tokenizer when new).")
    language_init: str | None = Field(None, description="Whisper: a related language whose token embedding the "
                                      "new language token starts from (e.g. es); default: the mean of all tokens.")
    max_tokens: int = Field(200, gt=0, description="Whisper: longest transcript in tokens (training cuts, decoding "
                            "stops there).")
    lora: LoraSettings | None = Field(None, description="Low-rank adapters (peft) instead of full fine-tuning: the "
                                      "model folder then holds the adapters and head only, and needs the base.")
    gradient_checkpointing: bool = Field(False, description="Recompute block activations in the backward pass "
                                         "(base models): less memory, about a third more compute.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ASRConfig:
        """Each attention head takes an equal slice of d_model; a remainder would fail in the first worker."""
        if self.arch == "conformer" and self.d_model % self.heads and not self.base:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        return self

    @model_validator(mode="after")
    def _base_fits_arch(self) -> ASRConfig:
        """A pretrained architecture needs a base, and a base excludes the from-scratch options."""
        if self.arch in ("hf_ctc", "whisper") and not self.base:
            raise ValueError(f"arch {self.arch} fine-tunes a pretrained model: set model.base (see `hearth base list`)")
        if self.base and self.init_from:
            raise ValueError("model.init_from and model.base both name a starting point; keep one")
        if self.base and self.units != "char":
            raise ValueError("units: sentencepiece is for models trained from scratch; a base model uses characters "
                             "(CTC) or its own tokenizer (Whisper)")
        return self

    def uses_base(self) -> bool:
        """Whether this model fine-tunes a registered base."""
        return bool(self.base)


class BiGRUCTC(nn.Module):
    """Log-mel (B, T, n_mels) -> per-frame unit log-probabilities (B, T/4, vocab+1)."""

    def __init__(self, cfg: ASRConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        c = cfg.conv_channels
        # Two stride-2 convolutions: 4x fewer frames (40 ms per output), cheaper recurrence.
        self.subsample = nn.Sequential(
            nn.Conv1d(cfg.n_mels, c, kernel_size=5, stride=2, padding=2), nn.GELU(),
            nn.Conv1d(c, c, kernel_size=5, stride=2, padding=2), nn.GELU(),
        )
        self.rnn = nn.GRU(c, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True,
                          dropout=cfg.dropout if cfg.layers > 1 else 0.0)
        self.drop = Dropout(cfg.dropout)
        self.out = nn.Linear(2 * cfg.hidden, vocab_size + 1)  # index 0 is the CTC blank

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Frames after subsampling for input LENGTHS."""
        for _ in range(2):
            lengths = (lengths + 2 * 2 - 5) // 2 + 1
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.subsample(feats.transpose(1, 2)).transpose(1, 2)  # (B, T', C)
        out_len = self.out_lengths(lengths)
        packed = nn.utils.rnn.pack_padded_sequence(x, out_len.cpu(), batch_first=True, enforce_sorted=False)
        y, _ = self.rnn(packed)
        y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])  # (B, T', 2H)
        return self.out(self.drop(y)).log_softmax(-1), out_len  # (B, T', V+1)


CTCModel = BiGRUCTC  # the walking skeleton's name


class FeedForward(nn.Module):
    """Pre-norm Swish feed-forward (used as two half-steps around each conformer block)."""

    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, mult * d), nn.SiLU(), Dropout(dropout),
                                 nn.Linear(mult * d, d), Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention that ignores padded frames."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.heads, self.dropout = heads, dropout

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        q, k, v = self.qkv(self.norm(x)).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        mask = ~pad[:, None, None, :]  # (B, 1, 1, T): True where a key may be attended to
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return dropout(self.proj(y), self.dropout, self.training)


class ConvModule(nn.Module):
    """Pointwise -> GLU -> depthwise conv -> norm -> Swish -> pointwise (local patterns, e.g. phones)."""

    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.dw_norm = nn.LayerNorm(d)  # LayerNorm, not BatchNorm: batches are tiny and padded
        self.pw2 = nn.Conv1d(d, d, 1)
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        y = self.norm(x).masked_fill(pad[..., None], 0.0).transpose(1, 2)  # (B, D, T)
        y = F.glu(self.pw1(y), dim=1)
        y = self.dw(y.masked_fill(pad[:, None, :], 0.0))  # padding must not leak into real frames
        y = F.silu(self.dw_norm(y.transpose(1, 2))).transpose(1, 2)
        return self.drop(self.pw2(y).transpose(1, 2))  # (B, T, D)


class ConformerBlock(nn.Module):
    """Macaron block: ½FFN, self-attention, convolution, ½FFN, norm (Gulati et al., 2020)."""

    def __init__(self, cfg: ASRConfig):
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.att = SelfAttention(d, cfg.heads, cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ff_mult, cfg.dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.att(x, pad)
        x = x + self.conv(x, pad)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)


def sinusoids(T: int, d: int) -> torch.Tensor:
    """Absolute sinusoidal positions (T, d)."""
    pos = torch.arange(T, dtype=torch.float32)[:, None]
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(T, d)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * inv), torch.cos(pos * inv)
    return pe


class ConformerCTC(nn.Module):
    """Log-mel (B, T, n_mels) -> 2-D conv subsampling x4 -> conformer blocks -> (B, T/4, vocab+1) log-probs."""

    def __init__(self, cfg: ASRConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        c, d = cfg.conv_channels, cfg.d_model
        self.subsample = nn.Sequential(nn.Conv2d(1, c, 3, stride=2), nn.SiLU(), nn.Conv2d(c, c, 3, stride=2), nn.SiLU())
        f = ((cfg.n_mels - 1) // 2 - 1) // 2  # mel bins left after two valid stride-2 convolutions
        self.inp = nn.Linear(c * f, d)
        self.drop = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(ConformerBlock(cfg) for _ in range(cfg.layers))
        self.out = nn.Linear(d, vocab_size + 1)  # index 0 is the CTC blank

    @staticmethod
    def out_lengths(lengths: torch.Tensor) -> torch.Tensor:
        """Frames after subsampling for input LENGTHS."""
        for _ in range(2):
            lengths = (lengths - 3) // 2 + 1
        return lengths

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.subsample(feats[:, None])  # (B, C, T', F')
        B, C, T, Fr = x.shape
        x = self.inp(x.permute(0, 2, 1, 3).reshape(B, T, C * Fr))  # (B, T', D)
        x = self.drop(x * math.sqrt(self.cfg.d_model) + sinusoids(T, self.cfg.d_model).to(x))
        out_len = self.out_lengths(lengths).clamp(min=1)
        pad = torch.arange(T, device=x.device)[None] >= out_len[:, None]  # (B, T') True on padding
        for block in self.blocks:
            x = block(x, pad)
        return self.out(x).log_softmax(-1), out_len  # (B, T', V+1)


def build(cfg: ASRConfig, vocab_size: int) -> nn.Module:
    """The encoder CFG asks for, with VOCAB_SIZE units plus blank."""
    return ConformerCTC(cfg, vocab_size) if cfg.arch == "conformer" else BiGRUCTC(cfg, vocab_size)
