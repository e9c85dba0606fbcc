"""`hearth oral-history`: one recording -> a bilingual, time-aligned transcript (ELAN, WebVTT, HTML reader)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from hearthkit.cli.common import PurposeOpt, RequesterOpt, WorkspaceOpt, console, open_catalog, user_errors

EXAMPLE = "\n\nExample: hearth oral-history interview.flac --asr mboshi-asr --mt mboshi-fr --to fr --out interview/"


@user_errors
def oral_history(
    recording: Annotated[Path, typer.Argument(help="Recording (.wav, .flac, .mp3, .ogg), any length.")],
    asr: Annotated[str, typer.Option(help="asr model (name or models/NAME folder).")],
    out: Annotated[Path, typer.Option(help="Output folder for the .eaf, .vtt and .html files.")],
    mt: Annotated[str | None, typer.Option(help="mt model translating the transcript (cascade).")] = None,
    st: Annotated[str | None, typer.Option(help="st model translating the speech (needs the st recipe).")] = None,
    to: Annotated[str | None, typer.Option(help="Language of the translation (e.g. fr); default: the "
                                                "translation model's own, when it has one.")] = None,
    vad: Annotated[str, typer.Option(help="Voice-activity detector: silero (model in its wheel) or "
                                          "energy.")] = "silero",
    beam: Annotated[int | None, typer.Option(help="asr beam width (default: the model's; 1 = greedy).")] = None,
    threads: Annotated[int, typer.Option(min=1, help="Torch threads (more only helps on an idle machine).")] = 1,
    max_segment: Annotated[float, typer.Option(help="Longest segment in seconds.")] = 20.0,
    min_pause: Annotated[float, typer.Option(help="Shortest pause (s) that ends a segment.")] = 0.3,
    overwrite: Annotated[bool, typer.Option(help="Replace files already in --out (they may hold "
                                                 "corrections).")] = False,
    diarise: Annotated[bool, typer.Option(help="Tell speakers apart (a simple voice clustering; a draft to "
                                               "check): one ELAN tier per speaker.")] = False,
    speakers: Annotated[int | None, typer.Option(min=1, help="How many speakers, when known (with --diarise; "
                                                             "otherwise guessed, and one voice may be split).")] = None,
    purpose: PurposeOpt = "community_use",
    requester: RequesterOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Transcribe and translate a recording into ELAN (transcription + translation tiers), WebVTT and an HTML reader."""
    from hearthkit.errors import HearthError
    from hearthkit.lineage.serving import record_use, resolve_use
    from hearthkit.transcribe.long import load_model
    from hearthkit.transcribe.oralhistory import (
        NO_SPEAKERS,
        SPEAKERS,
        check_outputs,
        make_oral_history,
        mt_translator,
        st_translator,
    )
    from hearthkit.transcribe.vad import VADConfig

    if mt and st:
        raise HearthError("--mt and --st: choose one translation model")
    if to and not (mt or st):
        raise HearthError(f"--to {to} needs a translation model: pass --mt M or --st M")
    if speakers is not None and not diarise:
        raise HearthError("--speakers needs --diarise (speakers are told apart only when asked)")
    if vad not in ("silero", "energy"):
        raise HearthError(f"--vad {vad!r}: choose silero or energy")
    if not recording.is_file():
        raise HearthError(f"{recording}: no such recording")
    check_outputs(recording, out, overwrite)  # before any model loads: corrections are never overwritten by default
    import torch

    torch.set_num_threads(threads)
    _, catalog = open_catalog(workspace)
    served = resolve_use(catalog, asr, "transcribe", requester, purpose)  # status, inherited labels, protocols
    translator, translated_by = None, None
    if mt:  # the translation language is checked here, before any audio is read
        tserved = resolve_use(catalog, mt, "translate", requester, purpose)
        translator, to = mt_translator(tserved.folder, tserved.name, to)
        translated_by = tserved.name
    elif st:
        from hearthkit.recipes.load import resolve_model

        folder = resolve_model(st, workspace, purpose, requester)  # status, inherited labels, protocols
        translator, to, translated_by = st_translator(folder, recording, to)
    lm = load_model(served.folder, beam)
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("reading", total=1)
        result = make_oral_history(lm, recording, out, translator, to, vad,
                                   VADConfig(min_pause_s=min_pause, max_segment_s=max_segment), overwrite=overwrite,
                                   diarise=diarise, speakers=speakers,
                                   progress=lambda what, done, total: bar.update(task, description=what,
                                                                                 completed=done, total=total))
    n = len(result.segments)
    record_use(catalog, served.name, "transcribe", requester, purpose, seconds=round(result.duration_s, 3),
               segments=n, formats=["eaf", "vtt", "html"])  # counts only: never the words
    if translated_by:
        record_use(catalog, translated_by, "translate", requester, purpose, lines=n, to=to)
    for p in result.files.values():
        console.print(f"wrote {p}", highlight=False)
    console.print(f"{n} segments ({vad} VAD), {result.duration_s:.1f} s of audio in {result.seconds['total']:.1f} s: "
                  f"real-time factor {result.seconds['total'] / max(result.duration_s, 1e-9):.3f}. "
                  f"{SPEAKERS.format(n=len({s.speaker for s in result.segments})) if diarise else NO_SPEAKERS}",
                  highlight=False)
