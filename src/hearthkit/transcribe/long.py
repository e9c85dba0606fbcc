"""Transcribe a long recording with a published speech model: VAD segments -> batched CTC -> Segments."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

from hearthkit.ingest.audio import resample
from hearthkit.recipes.load import LoadedModel, open_model
from hearthkit.transcribe.formats import Segment
from hearthkit.transcribe.vad import VADConfig, frame_energies, speech_segments

SAMPLE_RATE = 16000


def load_model(folder: Path, beam: int | None = None) -> LoadedModel:
    """Load the published asr model in FOLDER for inference (optionally with another beam width)."""
    lm = open_model(folder, "asr")
    if beam is not None:
        lm.cfg.decode.beam = beam
    return lm


def read_span(path: Path, start: float, end: float) -> np.ndarray:
    """Mono float32 samples of PATH between START and END seconds, at 16 kHz."""
    with sf.SoundFile(str(path)) as f:
        sr = f.samplerate
        f.seek(int(start * sr))
        wav = f.read(max(0, int(end * sr) - int(start * sr)), dtype="float32", always_2d=True).mean(axis=1)
    return resample(wav, sr, SAMPLE_RATE) if sr != SAMPLE_RATE else wav


def transcribe_file(lm: LoadedModel, audio: Path, batch_size: int = 16, vad: VADConfig | None = None,
                    progress: Callable[[str, float, float], None] | None = None) -> list[Segment]:
    """Segments of AUDIO with text: split at pauses, decode in batches of BATCH_SIZE segments."""
    energy, duration = frame_energies(audio, progress=(lambda d, t: progress("finding pauses", d, t))
                                      if progress else None)
    spans = speech_segments(energy, vad)
    out: list[Segment] = []
    done = 0.0
    for b in range(0, len(spans), batch_size):
        chunk = spans[b:b + batch_size]
        # The recipe's own input: log-mel, or what a pretrained base takes (a waveform, Whisper's mel)
        feats = [lm.recipe.features(lm.cfg, lm.prep, read_span(audio, s, e)) for s, e in chunk]
        texts = lm.recipe.transcribe(lm.model, lm.prep, feats, batch_size=batch_size, cfg=lm.cfg)
        out += [Segment(s, e, t) for (s, e), t in zip(chunk, texts, strict=True)]
        done = chunk[-1][1]
        if progress:
            progress("transcribing", done, duration)
    return out
