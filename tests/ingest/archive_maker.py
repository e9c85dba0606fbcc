"""Small real audio archives for importer tests (soundfile-written WAV/FLAC/OGG/MP3, no external data)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
           ".mp3": ("MP3", "MPEG_LAYER_III")}


def audio_bytes(suffix: str = ".wav", seconds: float = 0.3, sr: int = 16000, seed: int = 0) -> bytes:
    """A distinct short recording (tone + noise) encoded as SUFFIX."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    wav = 0.3 * np.sin(2 * np.pi * (200 + 10 * seed) * t) + 0.05 * rng.standard_normal(len(t))
    buf = io.BytesIO()
    fmt, subtype = FORMATS[suffix]
    sf.write(buf, wav.astype(np.float32), sr, format=fmt, subtype=subtype)
    return buf.getvalue()


def write_audio(path: Path, seconds: float = 0.3, sr: int = 16000, seed: int = 0) -> Path:
    path.write_bytes(audio_bytes(path.suffix.lower(), seconds, sr, seed))
    return path


def write_info(folder: Path, name: str = "test-coll", restricted: bool = False, layout: dict | None = None,
               path: Path | None = None) -> Path:
    """An archive.yaml with collective consent (at FOLDER/archive.yaml, or PATH for read-only archives)."""
    info = {"collection": {"name": name, "community": "Test Community", "licence": "CC BY-NC 4.0",
                           "citation": "Test archive", "restricted": restricted},
            "collective_consent": [{"subject": "Test Community", "given_by": "council", "given_at": "2026-01-05",
                                    "purposes": ["research", "language_revitalization"]}]}
    if layout:
        info["layout"] = layout
    dest = path or folder / "archive.yaml"
    dest.write_text(yaml.safe_dump(info, allow_unicode=True), encoding="utf-8")
    return dest


def speech_items(folder: Path, n: int, prefix: str = "utt", suffix: str = ".wav", seed0: int = 0) -> list[str]:
    """N recordings with .txt transcripts; returns their ids."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = []
    for i in range(n):
        uid = f"{prefix}{i:03d}"
        write_audio(folder / f"{uid}{suffix}", seed=seed0 + i)
        (folder / f"{uid}.txt").write_text(f"kupu {i}\n", encoding="utf-8")
        ids.append(uid)
    return ids
