"""Log-mel features with torch.stft and a mel filterbank (torchaudio does not import here)."""

from __future__ import annotations

import functools
import math

import torch


def _hz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f / 700.0)


def _mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


@functools.cache
def mel_filterbank(n_mels: int = 80, n_fft: int = 512, sample_rate: int = 16000) -> torch.Tensor:
    """HTK-style triangular mel filters, shape (n_mels, n_fft // 2 + 1)."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mels = torch.linspace(_hz_to_mel(torch.tensor(0.0)), _hz_to_mel(torch.tensor(sample_rate / 2)), n_mels + 2)
    hz = _mel_to_hz(mels)
    lower, center, upper = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lower) / (center - lower)
    down = (upper - freqs[None]) / (upper - center)
    return torch.clamp(torch.minimum(up, down), min=0.0)


def log_mel(wav: torch.Tensor, sample_rate: int = 16000, n_mels: int = 80, win_ms: float = 25.0,
            hop_ms: float = 10.0) -> torch.Tensor:
    """Per-utterance normalised log-mel features of a mono waveform: (T,) -> (frames, n_mels)."""
    win = int(sample_rate * win_ms / 1000)
    hop = int(sample_rate * hop_ms / 1000)
    n_fft = 1 << math.ceil(math.log2(win))
    spec = torch.stft(wav, n_fft=n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win),
                      center=True, return_complex=True)
    power = spec.abs().pow(2)  # (freq, frames)
    mel = mel_filterbank(n_mels, n_fft, sample_rate) @ power  # (n_mels, frames)
    feats = torch.log(mel + 1e-6).T  # (frames, n_mels)
    return (feats - feats.mean(0)) / (feats.std(0) + 1e-5)
