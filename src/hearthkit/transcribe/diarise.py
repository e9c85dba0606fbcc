"""Who spoke when, simply: one voice print per speech span, then agglomerative clustering of the spans.

What it is, honestly: each span's voice print is the mean and spread of its cepstrum over its louder frames (no
per-span normalisation, which would remove the voice) and its median pitch, standardised over the recording's
spans; spans are clustered by cosine distance with average linkage, into `speakers` groups when the number is
known, else cut at a distance threshold. It separates voices that differ in pitch and timbre, one voice per span
(a quiet interview). Known limits: two voices of the same pitch and timbre merge; without `speakers` the count is
a guess (standardising over one voice's spans spreads them, so a single speaker is over-split: give the number
when you know it); a span where the speaker changes is not split; overlapping speech is not handled. Its labels
(speaker-1, speaker-2, … in order of first appearance) are a draft for a person to check in ELAN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hearthkit.errors import HearthError

SAMPLE_RATE = 16000
N_MELS = 40
THRESHOLD = 1.1  # average cosine distance (0-2) that ends a cluster when the number of speakers is not given


def voice_print(wav: np.ndarray) -> np.ndarray:
    """A span's voice: mean and spread of its cepstrum (spectral envelope) over its louder frames, and its median
    pitch (log F0) given three times the weight of one cepstral dimension, since pitch tells voices apart best."""
    from hearthkit.data.features import mel_filterbank

    x = np.ascontiguousarray(wav, np.float32)
    if len(x) < 640:
        x = np.pad(x, (0, 640 - len(x)))
    t = torch.from_numpy(x)
    win, hop, n_fft = 400, 160, 512
    spec = torch.stft(t, n_fft=n_fft, hop_length=hop, win_length=win, window=torch.hann_window(win),
                      center=True, return_complex=True).abs().pow(2)
    mel = torch.log(mel_filterbank(N_MELS, n_fft, SAMPLE_RATE) @ spec + 1e-8).T.numpy()  # (frames, n_mels)
    mel = mel[mel.mean(1) >= np.quantile(mel.mean(1), 0.2)]  # pauses inside a span carry no voice
    k = np.arange(N_MELS)
    dct = np.cos(np.pi / N_MELS * (k[None] + 0.5) * np.arange(1, 20)[:, None])  # c1..c19: c0 is loudness
    cep = mel @ dct.T
    return np.concatenate([cep.mean(0), cep.std(0), [_log_f0(x)] * 3])


def _log_f0(x: np.ndarray) -> float:
    """Median log pitch (Hz) of the louder half of X's 40 ms frames, by autocorrelation over 50-400 Hz."""
    n = 640
    frames = np.lib.stride_tricks.sliding_window_view(x, n)[::160]
    energy = (frames ** 2).sum(1)
    frames = frames[energy >= np.quantile(energy, 0.5)]
    frames = frames - frames.mean(1, keepdims=True)
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames, 2 * n)) ** 2)[:, :n]
    lo, hi = SAMPLE_RATE // 400, SAMPLE_RATE // 50
    lag = lo + np.argmax(ac[:, lo:hi], 1)
    voiced = ac[np.arange(len(ac)), lag] / (ac[:, 0] + 1e-9) > 0.3
    return float(np.median(np.log(SAMPLE_RATE / lag[voiced]))) if voiced.any() else 0.0


def _average_linkage(dist: np.ndarray, k: int | None, threshold: float) -> np.ndarray:
    """Cluster ids from agglomerative clustering with average linkage over the distance matrix DIST: merge the
    closest pair until K clusters remain, or (K None) until the closest pair is farther apart than THRESHOLD."""
    n = len(dist)
    d = dist.astype(np.float64).copy()
    np.fill_diagonal(d, np.inf)
    label = np.arange(n)
    size = np.ones(n)
    alive = np.ones(n, bool)
    while alive.sum() > (k or 1):
        masked = np.where(alive[:, None] & alive[None, :], d, np.inf)
        i, j = np.unravel_index(int(np.argmin(masked)), d.shape)
        if k is None and masked[i, j] > threshold:
            break
        # Lance-Williams for average linkage: the merged cluster's distance is the size-weighted mean
        merged = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])
        d[i], d[:, i] = merged, merged
        d[i, i] = np.inf
        size[i] += size[j]
        alive[j] = False
        label[label == j] = i
    return label


def cluster(prints: np.ndarray, speakers: int | None = None, threshold: float = THRESHOLD) -> list[str]:
    """Speaker labels of the rows of PRINTS: SPEAKERS clusters, or as many as the THRESHOLD cut gives."""
    n = len(prints)
    if speakers is not None and speakers < 1:
        raise HearthError(f"--speakers {speakers}: give 1 or more")
    if speakers is not None and speakers > n:
        raise HearthError(f"--speakers {speakers}: the recording has only {n} speech segments; give at most {n}")
    if n == 0:
        return []
    z = (prints - prints.mean(0)) / (prints.std(0) + 1e-6)  # each dimension counts alike within this recording
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-12
    raw = _average_linkage(1.0 - z @ z.T, speakers, threshold)  # cosine distance
    names: dict[int, str] = {}
    for r in raw:  # numbered in order of first appearance
        names.setdefault(int(r), f"speaker-{len(names) + 1}")
    return [names[int(r)] for r in raw]


def diarise(recording: Path, spans: list[tuple[float, float]], speakers: int | None = None,
            threshold: float = THRESHOLD) -> list[str]:
    """A speaker label for each of RECORDING's SPANS (seconds)."""
    from hearthkit.transcribe.long import read_span

    prints = np.stack([voice_print(read_span(recording, s, e)) for s, e in spans]) if spans else np.zeros((0, 1))
    return cluster(prints, speakers, threshold)
