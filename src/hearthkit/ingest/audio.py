"""Probe and decode audio with soundfile; say exactly what is wrong with a bad file."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import numpy as np
import soundfile as sf

AUDIO_SUFFIXES = {".wav": "audio/wav", ".flac": "audio/flac", ".ogg": "audio/ogg", ".mp3": "audio/mpeg"}


class BadAudio(ValueError):
    """The bytes are not usable audio; the message says why."""


_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


def reason(exc: BaseException) -> str:
    """EXC's first line without Python object reprs (libsndfile names the in-memory buffer it was given, e.g.
    `Error opening <_io.BytesIO object at 0x…>: …`); the caller names the file."""
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    text = re.sub(r"^Error opening " + _REPR.pattern + r":\s*", "", text)
    return _REPR.sub("the file", text).strip() or type(exc).__name__


@dataclass(frozen=True)
class AudioInfo:
    """What the catalog records about a recording."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate


def probe(data: bytes, accept_truncated: bool = False) -> AudioInfo:
    """Check DATA decodes fully as audio; raise BadAudio with a readable reason if not."""
    if not data:
        raise BadAudio("empty file (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            # libsndfile notes a header that promises more data than the file holds as "(should be …)".
            if "should be" in (f.extra_info or "") and not accept_truncated:
                raise BadAudio("truncated: the header promises more audio than the file holds")
            frames = 0
            for block in f.blocks(blocksize=65536, dtype="float32"):
                frames += len(block)
            info = AudioInfo(f.samplerate, f.channels, frames)
    except BadAudio:
        raise
    except Exception as exc:  # soundfile raises LibsndfileError/RuntimeError with a terse message
        raise BadAudio(f"not readable audio ({reason(exc)})") from None
    if info.frames == 0:
        raise BadAudio("no audio samples")
    return info


def decode(data: bytes, sample_rate: int = 16000) -> np.ndarray:
    """Decode DATA to mono float32 at SAMPLE_RATE (linear resampling when the rate differs); BadAudio if unreadable."""
    try:
        wav, sr = sf.read(io.BytesIO(data), dtype="float32")
    except Exception as exc:  # soundfile's errors name the buffer object, not the file: say what is wrong instead
        raise BadAudio(f"not readable audio ({reason(exc)})") from None
    if wav.ndim == 2:  # mix down only when there is more than one channel: mono needs no copy
        wav = wav.mean(axis=1)
    if sr != sample_rate:
        wav = resample(wav, sr, sample_rate)
    return wav


def resample(wav: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Band-limited resampling via torch (polyphase-free sinc would need torchaudio, which is unavailable)."""
    import torch
    import torch.nn.functional as F

    n_out = int(round(len(wav) * target / sr))
    x = torch.from_numpy(np.ascontiguousarray(wav))[None, None]
    if target < sr:  # low-pass first so downsampling does not alias
        k = int(sr / target * 4) | 1
        t = torch.arange(k) - k // 2
        h = torch.sinc(t * target / sr) * torch.hann_window(k, periodic=False)
        h = (h / h.sum()).to(x.dtype)
        x = F.conv1d(F.pad(x, (k // 2, k // 2), mode="reflect"), h[None, None])
    y = F.interpolate(x, size=n_out, mode="linear", align_corners=False)
    return y[0, 0].numpy()
