"""Voice activity detection: where the speech of a long recording is.

Two detectors: silero-vad (a small neural model shipped inside its wheel, so nothing downloads; fed tensors read
with soundfile, no torchaudio) and the energy detector (no model at all), kept as the fallback for recordings
where a model is not wanted and for machines without the wheel. Both return (start_s, end_s) spans.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from hearthkit.errors import HearthError

HOP_S = 0.01  # one energy value per 10 ms


@dataclass(frozen=True)
class VADConfig:
    """Thresholds of the detector; defaults suit speech recorded with a handheld device or a lapel mic."""

    min_pause_s: float = 0.3  # silences shorter than this stay inside a segment
    min_speech_s: float = 0.2  # shorter bursts are clicks, not speech
    max_segment_s: float = 20.0  # longer segments are cut at their quietest point (the model's comfort zone)
    pad_s: float = 0.1  # keep a little context either side of the speech
    margin_db: float = 12.0  # speech is this much louder than the noise floor (or a share of the range)


def frame_energies(path: Path, block_s: float = 30.0,
                   progress: Callable[[float, float], None] | None = None) -> tuple[np.ndarray, float]:
    """Log energy (dB) per 10 ms of the recording at PATH, read block by block; and its duration in seconds."""
    try:
        info = sf.info(str(path))
    except Exception as exc:  # soundfile's errors are terse; name the file and the problem
        raise HearthError(f"{path}: not readable audio ({str(exc).splitlines()[0]})") from None
    hop = max(1, int(round(info.samplerate * HOP_S)))
    out: list[np.ndarray] = []
    block = hop * int(block_s / HOP_S)
    done = 0
    for chunk in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
        mono = chunk.mean(axis=1)
        n = len(mono) // hop
        if n:
            frames = mono[: n * hop].reshape(n, hop)
            out.append(10 * np.log10((frames**2).mean(axis=1) + 1e-10))
        done += len(mono)
        if progress:
            progress(done / info.samplerate, info.frames / info.samplerate)
    return (np.concatenate(out) if out else np.zeros(0)), info.frames / info.samplerate


def _runs(mask: np.ndarray) -> Iterator[tuple[int, int]]:
    """(start, end) frame index pairs of the True runs of MASK."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True)


def speech_segments(energy: np.ndarray, cfg: VADConfig | None = None) -> list[tuple[float, float]]:
    """Speech segments (start_s, end_s) from per-10 ms energies: threshold, bridge short pauses, cap length."""
    cfg = cfg or VADConfig()
    if len(energy) == 0:
        return []
    floor, loud = np.percentile(energy, 10), np.percentile(energy, 99)
    threshold = floor + min(cfg.margin_db, 0.5 * (loud - floor))
    mask = energy > threshold
    # Bridge pauses shorter than min_pause_s: they are between words, not between utterances.
    gap = int(round(cfg.min_pause_s / HOP_S))
    for s, e in list(_runs(~mask)):
        if e - s < gap and s > 0 and e < len(mask):
            mask[s:e] = True
    segs: list[tuple[int, int]] = []
    for s, e in _runs(mask):
        if (e - s) * HOP_S >= cfg.min_speech_s:
            segs += _cap(energy, s, e, int(cfg.max_segment_s / HOP_S))
    pad = int(round(cfg.pad_s / HOP_S))
    out = []
    for i, (s, e) in enumerate(segs):
        lo = max(s - pad, segs[i - 1][1] if i else 0)
        hi = min(e + pad, segs[i + 1][0] if i + 1 < len(segs) else len(energy))
        out.append((round(lo * HOP_S, 3), round(hi * HOP_S, 3)))
    return out


def _cap(energy: np.ndarray, s: int, e: int, longest: int) -> list[tuple[int, int]]:
    """Split [s, e) at its quietest 100 ms (away from the edges) until no piece is longer than LONGEST."""
    if e - s <= longest:
        return [(s, e)]
    lo, hi = s + longest // 4, e - longest // 4
    smooth = np.convolve(energy[lo:hi], np.ones(10) / 10, mode="same")
    cut = lo + int(np.argmin(smooth))
    return _cap(energy, s, cut, longest) + _cap(energy, cut, e, longest)


SILERO_RATE = 16000


def read_mono_16k(path: Path) -> tuple[np.ndarray, float]:
    """The whole recording at PATH as mono float32 at 16 kHz, and its duration in seconds."""
    from hearthkit.ingest.audio import resample

    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile's errors are terse; name the file and the problem
        raise HearthError(f"{path}: not readable audio ({str(exc).splitlines()[0]})") from None
    mono = wav.mean(axis=1)
    duration = len(mono) / sr
    return (resample(mono, sr, SILERO_RATE) if sr != SILERO_RATE else mono), duration


def silero_segments(path: Path, cfg: VADConfig | None = None, threshold: float = 0.5,
                    progress: Callable[[float, float], None] | None = None) -> tuple[list[tuple[float, float]], float]:
    """Speech spans of the recording at PATH by silero-vad, with the energy detector's pause, length and padding
    settings; and the recording's duration in seconds."""
    import torch

    try:
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        raise HearthError("silero-vad is not installed (pip install silero-vad); or use --vad energy") from None
    cfg = cfg or VADConfig()
    wav, duration = read_mono_16k(path)
    model = load_silero_vad()  # TorchScript file inside the wheel: offline
    total = len(wav) / SILERO_RATE
    stamps = get_speech_timestamps(
        torch.from_numpy(np.ascontiguousarray(wav)), model, threshold=threshold, sampling_rate=SILERO_RATE,
        min_speech_duration_ms=int(cfg.min_speech_s * 1000), max_speech_duration_s=cfg.max_segment_s,
        min_silence_duration_ms=int(cfg.min_pause_s * 1000), speech_pad_ms=int(cfg.pad_s * 1000),
        progress_tracking_callback=(lambda pct: progress(pct / 100 * total, total)) if progress else None)
    return [(round(s["start"] / SILERO_RATE, 3), round(s["end"] / SILERO_RATE, 3)) for s in stamps], duration
