"""A GPT-style decoder-only language model, nanoGPT-like, readable top to bottom.

Shapes: B batch, T time (tokens), C n_embd, H heads, V vocabulary.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from hearthkit.engine.dropout import Dropout


class LMConfig(BaseModel):
    """Units, model size and data settings of the lm recipe (GPT-2 small: 12 layers, 12 heads, 768 wide)."""

    model_config = ConfigDict(extra="forbid")
    units: Literal["char", "sentencepiece"] = Field("char", description="Token units: char, or sentencepiece "
                                                    "(subwords).")
    vocab_size: int = Field(2000, gt=8, description="sentencepiece vocabulary size (units: sentencepiece).")
    lang: str | None = Field(None, description="Train only on text items whose meta.lang is this (e.g. nah).")
    block_size: int = Field(128, gt=1, description="Context length in tokens.")
    n_layer: int = Field(4, gt=0, description="Transformer blocks.")
    n_head: int = Field(4, gt=0, description="Attention heads.")
    n_embd: int = Field(128, gt=0, description="Width.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout.")
    bias: bool = Field(False, description="Biases in Linear and LayerNorm layers (GPT-2 has them).")
    eval_batch: int = Field(16, gt=0, description="Items scored per batch at evaluation.")
    group_by: list[str] = Field(["lang", "domain", "variant", "document"],
                                description="Item metadata columns the evaluation is broken down by.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LMConfig:
        """Each attention head takes an equal slice of n_embd; a remainder would fail in the first worker."""
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} must be a multiple of n_head {self.n_head}")
        return self


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = Dropout(cfg.dropout)
        self.n_head, self.dropout = cfg.n_head, cfg.dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, H, T, C/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, H, T, C/H)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))  # (B, T, C)


class Block(nn.Module):
    """Pre-LN residual block: x + attn(ln(x)); x + mlp(ln(x))."""

    def __init__(self, cfg: LMConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """Token + position embeddings, N blocks, final LayerNorm, output tied to the token embedding.

    The tie is a matmul with wte.weight rather than a shared Parameter, so safetensors stores it once.
    """

    def __init__(self, cfg: LMConfig, vocab: int):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.wte = nn.Embedding(vocab, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.drop = Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def n_params(self, non_embedding: bool = True) -> int:
        """Parameters (without position embeddings: they cost no matmul FLOPs)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        """Next-token logits (B, T, V) of token ids IDX (B, T)."""
        B, T = idx.shape
        assert T <= self.cfg.block_size, f"sequence of {T} tokens is longer than block_size {self.cfg.block_size}"
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, C)
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # output tied to the token embedding: (B, T, V)

    def flops_per_token(self, T: int | None = None) -> float:
        """Training FLOPs per token: 6N for the matmuls plus 12·L·C·T for attention scores (PaLM appendix B)."""
        T = T or self.cfg.block_size
        return 6 * self.n_params() + 12 * self.cfg.n_layer * self.cfg.n_embd * T

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 stop: int | None = None) -> torch.Tensor:
        """Sample NEW_TOKENS continuations of IDX (B, T) (the context is cut to block_size)."""
        for _ in range(new_tokens):
            ctx = idx[:, -self.cfg.block_size:]  # (B, <=block)
            logits = self(ctx)[:, -1, :] / max(temperature, 1e-5)  # (B, V)
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -float("inf")
            nxt = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)  # (B, 1)
            idx = torch.cat([idx, nxt], dim=1)
            if stop is not None and bool((nxt == stop).all()):
                break
        return idx
