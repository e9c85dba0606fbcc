"""`hearth transcribe`: draft time-aligned transcripts of long recordings for the community to correct."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from hearthkit.cli.common import PurposeOpt, RequesterOpt, WorkspaceOpt, console, open_catalog, user_errors
from hearthkit.errors import HearthError

FORMATS = ("vtt", "srt", "eaf")
EXAMPLE = "\n\nExample: hearth transcribe mboshi-asr interview.flac --format vtt --format eaf --out drafts/"


@user_errors
def transcribe(
    model: Annotated[str, typer.Argument(help="Model name (see `hearth models`) or a models/NAME folder.")],
    recording: Annotated[Path, typer.Argument(help="Recording (.wav, .flac, .mp3, .ogg), any length.")],
    format_: Annotated[list[str] | None, typer.Option("--format", "-f", help="Output formats: vtt, srt, eaf.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: beside the recording).")] = None,
    batch_size: Annotated[int, typer.Option(help="Segments decoded together.")] = 16,
    beam: Annotated[int | None, typer.Option(help="Beam width (default: the model's; 1 = greedy).")] = None,
    max_segment: Annotated[float, typer.Option(help="Longest segment in seconds; longer speech is cut at its "
                                                    "quietest point.")] = 20.0,
    min_pause: Annotated[float, typer.Option(help="Shortest pause (s) that ends a segment.")] = 0.3,
    purpose: PurposeOpt = "community_use",
    requester: RequesterOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Split a long recording at pauses, transcribe it in batches, write WebVTT/SRT/ELAN drafts."""
    from hearthkit.lineage.serving import record_use, resolve_use
    from hearthkit.transcribe.formats import to_eaf, to_srt, to_vtt, write_atomic
    from hearthkit.transcribe.long import load_model, transcribe_file
    from hearthkit.transcribe.vad import VADConfig

    formats = format_ or ["vtt", "eaf"]
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise HearthError(f"--format {bad[0]!r}: choose from {', '.join(FORMATS)}")
    if not recording.is_file():
        raise HearthError(f"{recording}: no such recording")
    _, catalog = open_catalog(workspace)
    served = resolve_use(catalog, model, "transcribe", requester, purpose)  # status, inherited labels, protocols
    lm = load_model(served.folder, beam)
    out = out or recording.parent
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("reading", total=1)
        segments = transcribe_file(lm, recording, batch_size, VADConfig(min_pause_s=min_pause,
                                                                        max_segment_s=max_segment),
                                   progress=lambda what, done, total: bar.update(task, description=what,
                                                                                 completed=done, total=total))
    wall = time.perf_counter() - t0
    writers = {"vtt": to_vtt, "srt": to_srt, "eaf": lambda s: to_eaf(s, recording)}
    for f in formats:
        path = out / f"{recording.stem}.{f}"
        write_atomic(path, writers[f](segments))
        console.print(f"wrote {path}")
    audio_s = segments[-1].end if segments else 0.0
    import soundfile as sf

    duration = sf.info(str(recording)).duration
    record_use(catalog, served.name, "transcribe", requester, purpose, seconds=round(duration, 3),
               segments=len(segments), formats=formats)  # counts only: never the words
    console.print(f"{len(segments)} segments, {duration:.1f} s of audio ({audio_s:.1f} s up to the last speech) "
                  f"in {wall:.1f} s: real-time factor {wall / max(duration, 1e-9):.3f}")
