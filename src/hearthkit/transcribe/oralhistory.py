"""An oral history from one recording: speech spans (silero-vad or energy) -> transcript -> translation -> files.

The files are what a community works with: an ELAN document with time-aligned transcription and translation tiers
(re-imported after correction as training data for both models, ingest/elan.py), WebVTT with both lines per cue,
and a one-page HTML reader that plays the stretch of audio of the line clicked. Speakers: with `diarise`, a simple
voice clustering (transcribe/diarise.py) labels each segment and ELAN gets one tier per speaker (a draft to check);
without it every segment is on one tier and the files say so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hearthkit.errors import HearthError
from hearthkit.transcribe.formats import Segment, to_eaf, to_html, to_vtt, write_atomic
from hearthkit.transcribe.vad import VADConfig

Progress = Callable[[str, float, float], None]
Translator = Callable[[list[Segment]], list[str]]  # segments (times and transcript) -> one translation each
NO_SPEAKERS = "No speaker tier: speakers were not told apart (--diarise does); all lines are on one tier."
SPEAKERS = ("Speakers: {n} told apart by a simple voice clustering (pitch and spectral envelope per segment); "
            "a draft, check each line's speaker.")


@dataclass
class OralHistory:
    """What `make_oral_history` produced: the segments, the files written, and how long each stage took."""

    segments: list[Segment]
    files: dict[str, Path]
    duration_s: float
    seconds: dict[str, float]


def speech_spans(recording: Path, vad: str = "silero", cfg: VADConfig | None = None,
                 progress: Progress | None = None) -> tuple[list[tuple[float, float]], float]:
    """(speech spans, duration in seconds) of RECORDING by the VAD named (silero or energy)."""
    from hearthkit.transcribe.vad import frame_energies, silero_segments, speech_segments

    tick = (lambda d, t: progress("finding speech", d, t)) if progress else None
    if vad == "silero":
        return silero_segments(recording, cfg, progress=tick)
    if vad == "energy":
        energy, duration = frame_energies(recording, progress=tick)
        return speech_segments(energy, cfg), duration
    raise HearthError(f"--vad {vad!r}: choose silero or energy")


def transcribe_spans(lm, recording: Path, spans: list[tuple[float, float]], batch_size: int = 16,
                     progress: Progress | None = None, duration: float = 0.0) -> list[Segment]:
    """Segments of RECORDING's SPANS with the text the asr model LM writes, decoded in batches."""
    from hearthkit.transcribe.long import read_span

    out: list[Segment] = []
    for b in range(0, len(spans), batch_size):
        chunk = spans[b:b + batch_size]
        feats = [lm.recipe.features(lm.cfg, lm.prep, read_span(recording, s, e)) for s, e in chunk]
        texts = lm.recipe.transcribe(lm.model, lm.prep, feats, batch_size=batch_size, cfg=lm.cfg)
        out += [Segment(s, e, t) for (s, e), t in zip(chunk, texts, strict=True)]
        if progress:
            progress("transcribing", chunk[-1][1], duration)
    return out


def translate(segments: list[Segment], translator: Translator) -> list[Segment]:
    """SEGMENTS with the translation TRANSLATOR gives each segment with a transcript (the others get none)."""
    todo = [i for i, s in enumerate(segments) if s.text.strip()]
    got = translator([segments[i] for i in todo]) if todo else []
    if len(got) != len(todo):
        raise HearthError(f"the translation model returned {len(got)} lines for {len(todo)} segments")
    by = dict(zip(todo, got, strict=True))
    return [Segment(s.start, s.end, s.text, s.speaker, by.get(i, "")) for i, s in enumerate(segments)]


def outputs(recording: Path, out: Path) -> dict[str, Path]:
    """The files an oral history of RECORDING writes into OUT."""
    return {f: out / f"{recording.stem}.{f}" for f in ("eaf", "vtt", "html")}


def check_outputs(recording: Path, out: Path, overwrite: bool = False) -> dict[str, Path]:
    """The files to write into OUT, or one line when OUT cannot hold them or would replace files (before any work)."""
    for folder in (out, *out.parents):  # the nearest existing ancestor must be a folder, or mkdir fails later
        if folder.exists():
            if not folder.is_dir():
                raise HearthError(f"--out {out}: {folder} is a file, not a folder; choose a folder for the .eaf, "
                                  ".vtt and .html files; nothing was written")
            break
    files = outputs(recording, out)
    have = [p for p in files.values() if p.exists()]
    if have and not overwrite:
        raise HearthError(f"{have[0]} already exists (it may hold corrections); choose another --out or pass "
                          "--overwrite; nothing was written")
    return files


def translation_language(kind: str, name: str, targets: list[str], to: str | None) -> str:
    """The language to translate into: TO when model NAME (of KIND) translates into it, else its only target when TO
    is not given; otherwise one line (checked before any audio is read, so nothing is written)."""
    known = ", ".join(targets) or "no language"
    if to is None:
        if len(targets) == 1:
            return targets[0]
        raise HearthError(f"--to is needed: {kind} model {name} translates into {known}; choose one with --to; "
                          "nothing was written")
    if to not in targets:
        raise HearthError(f"--to {to}: {kind} model {name} translates into {known}, not {to}; pass --to "
                          f"{targets[0] if targets else 'LANG'} or use a model that translates into {to}; "
                          "nothing was written")
    return to


def mt_translator(folder: Path, name: str, to: str | None) -> tuple[Translator, str]:
    """A translator of transcripts by the mt model in FOLDER and its language (TO, checked; default its only one)."""
    from hearthkit.recipes.load import load_model_dir
    from hearthkit.recipes.mt.recipe import directions

    recipe, cfg, prep, net = load_model_dir(folder, "mt")
    lang = translation_language("mt", name, sorted({t for _, t in directions(cfg)}), to)

    def translator(segments: list[Segment]) -> list[str]:
        return recipe.translate(net, cfg, prep, [s.text for s in segments], lang, None)

    return translator, lang


def st_translator(folder: Path, recording: Path, to: str | None) -> tuple[Translator, str, str]:
    """A translator of RECORDING's segments by the st model in FOLDER, its language (TO, checked against the model's
    `target`; default that target) and the model's name.

    An e2e model, or a cascade with its own asr model, hears each segment; a cascade trained without one (its text
    model alone, e.g. on the transcripts and translations an ELAN round trip brought back) translates the lines the
    oral history's asr model wrote.
    """
    from hearthkit.recipes.load import open_model
    from hearthkit.recipes.st.cascade import translate_segments
    from hearthkit.transcribe.long import read_span

    model = open_model(folder, "st")
    lang = translation_language("st", model.name, [model.cfg.target], to)
    hears = model.cfg.mode == "e2e" or bool(model.cfg.init_from)

    def translator(segments: list[Segment]) -> list[str]:
        if not hears:
            return translate_segments(model, [s.text for s in segments])
        return translate_segments(model, [read_span(recording, s.start, s.end) for s in segments])

    return translator, lang, model.name


def make_oral_history(lm, recording: Path, out: Path, translator: Translator | None = None,
                      lang: str | None = None, vad: str = "silero", cfg: VADConfig | None = None,
                      batch_size: int = 16, overwrite: bool = False,
                      progress: Progress | None = None, diarise: bool = False,
                      speakers: int | None = None) -> OralHistory:
    """Segment, transcribe and (with TRANSLATOR, into LANG) translate RECORDING; write ELAN, WebVTT and HTML to OUT.

    Refuses, before any work, to replace files already in OUT (they may hold a community's corrections) unless
    OVERWRITE; a recording with no speech is one line and writes nothing. DIARISE labels each segment's speaker
    (SPEAKERS of them when given, else as many as the voices' distances suggest).
    """
    if not recording.is_file():
        raise HearthError(f"{recording}: no such recording")
    if translator is not None and not lang:
        raise HearthError("a translation needs its language: pass --to LANG (e.g. --to fr)")
    files = check_outputs(recording, out, overwrite)
    clock: dict[str, float] = {}
    t0 = time.perf_counter()
    spans, duration = speech_spans(recording, vad, cfg, progress)
    clock["vad"] = time.perf_counter() - t0
    if not spans:
        raise HearthError(f"{recording}: no speech found by the {vad} voice-activity detector "
                          f"({duration:.1f} s of audio); nothing was written")
    t1 = time.perf_counter()
    segments = transcribe_spans(lm, recording, spans, batch_size, progress, duration)
    clock["transcribe"] = time.perf_counter() - t1
    if diarise:
        from hearthkit.transcribe.diarise import diarise as who_spoke

        t3 = time.perf_counter()
        if progress:
            progress("telling speakers apart", 0, 1)
        labels = who_spoke(recording, spans, speakers)
        segments = [Segment(s.start, s.end, s.text, who) for s, who in zip(segments, labels, strict=True)]
        clock["diarise"] = time.perf_counter() - t3
    if translator is not None:
        t2 = time.perf_counter()
        if progress:
            progress("translating", 0, 1)
        segments = translate(segments, translator)
        clock["translate"] = time.perf_counter() - t2
    out.mkdir(parents=True, exist_ok=True)
    audio_src = os.path.relpath(recording.resolve(), out.resolve())
    told = SPEAKERS.format(n=len({s.speaker for s in segments})) if diarise else NO_SPEAKERS
    note = told + (f" Translation: {lang}." if translator is not None else " Not translated.")
    write_atomic(files["eaf"], to_eaf(segments, recording, translation_lang=lang if translator else None))
    write_atomic(files["vtt"], to_vtt(segments))
    write_atomic(files["html"], to_html(segments, audio_src, recording.stem, note))
    clock["total"] = time.perf_counter() - t0
    return OralHistory(segments, files, duration, clock)
