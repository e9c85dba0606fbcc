"""A small CTC acoustic model: convolutional subsampling, bidirectional GRU, linear to characters."""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field
from torch import nn


class ASRConfig(BaseModel):
    """Model shape of the asr recipe."""

    n_mels: int = Field(80, description="Log-mel bins per frame.")
    conv_channels: int = Field(192, description="Channels of the two subsampling convolutions.")
    hidden: int = Field(192, description="GRU hidden size per direction.")
    layers: int = Field(2, description="Bidirectional GRU layers.")
    dropout: float = Field(0.1, description="Dropout between layers.")
    spec_augment: bool = Field(True, description="Mask time and frequency bands of training features.")


class CTCModel(nn.Module):
    """Log-mel (B, T, n_mels) -> per-frame character log-probabilities (B, T/4, vocab+1)."""

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
        self.drop = nn.Dropout(cfg.dropout)
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
