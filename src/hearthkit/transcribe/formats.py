"""Time-aligned transcript files: WebVTT, SubRip (SRT), ELAN (.eaf) and a one-page HTML reader, written atomically.

A segment may carry a translation: WebVTT then has two lines per cue, ELAN a translation tier that depends on the
transcription tier (Symbolic_Association, so ELAN keeps the two aligned), the HTML reader both lines.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote


@dataclass(frozen=True)
class Segment:
    """One stretch of speech: start and end in seconds, its text, and who speaks (if known)."""

    start: float
    end: float
    text: str
    speaker: str | None = None
    translation: str | None = None


def _cue(text: str) -> str:
    """Cue text as WebVTT needs it: &, < and > escaped, no blank line (which would end the cue)."""
    return html.escape(" ".join(text.split()), quote=False) or "…"


def _clock(t: float, sep: str) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_vtt(segments: list[Segment]) -> str:
    """WebVTT text (cues numbered from 1, `HH:MM:SS.mmm`); a translated segment's cue has the translation as a
    second line."""
    lines = ["WEBVTT", ""]
    for i, s in enumerate(segments, 1):
        second = [_cue(s.translation)] if s.translation is not None else []
        lines += [str(i), f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}", _cue(s.text), *second, ""]
    return "\n".join(lines)


def to_srt(segments: list[Segment]) -> str:
    """SubRip text (`HH:MM:SS,mmm`)."""
    lines = []
    for i, s in enumerate(segments, 1):
        lines += [str(i), f"{_clock(s.start, ',')} --> {_clock(s.end, ',')}", s.text or "…", ""]
    return "\n".join(lines)


def parse_vtt(text: str) -> list[Segment]:
    """Segments of a WebVTT (or SRT) file: cue timings and their text lines."""
    out: list[Segment] = []
    blocks = text.replace("\r\n", "\n").strip().split("\n\n")
    for b in blocks:
        lines = [x for x in b.split("\n") if x.strip()]
        idx = next((i for i, x in enumerate(lines) if "-->" in x), None)
        if idx is None:
            continue
        a, z = (p.strip().split()[0] for p in lines[idx].split("-->"))
        body = [html.unescape(x) for x in lines[idx + 1:]]
        out.append(Segment(_seconds(a), _seconds(z), body[0] if len(body) > 1 else " ".join(body),
                           translation=" ".join(body[1:]) if len(body) > 1 else None))
    return out


def _seconds(clock: str) -> float:
    parts = clock.replace(",", ".").split(":")
    return sum(float(p) * 60**i for i, p in enumerate(reversed(parts)))


def to_eaf(segments: list[Segment], media: Path, tier: str = "transcription", author: str = "hearthkit",
           translation_lang: str | None = None) -> str:
    """An ELAN 3.0 annotation document: one time-aligned tier per speaker (or one tier), linked to MEDIA; with
    TRANSLATION_LANG, a `translation-LANG` tier under each (one annotation per segment, referring to it)."""
    doc = ET.Element("ANNOTATION_DOCUMENT", {
        "AUTHOR": author, "DATE": datetime.now(UTC).replace(microsecond=0).isoformat(), "FORMAT": "3.0",
        "VERSION": "3.0", "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        "xsi:noNamespaceSchemaLocation": "http://www.mpi.nl/tools/elan/EAFv3.0.xsd"})
    header = ET.SubElement(doc, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    mime = {".wav": "audio/x-wav", ".mp3": "audio/mpeg", ".flac": "audio/flac"}.get(media.suffix.lower(), "audio/*")
    ET.SubElement(header, "MEDIA_DESCRIPTOR", {"MEDIA_URL": media.resolve().as_uri(), "MIME_TYPE": mime,
                                               "RELATIVE_MEDIA_URL": f"./{media.name}"})
    order = ET.SubElement(doc, "TIME_ORDER")
    tiers: dict[str, ET.Element] = {}
    for i, s in enumerate(segments):
        a, z = f"ts{2 * i + 1}", f"ts{2 * i + 2}"
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": a, "TIME_VALUE": str(int(round(s.start * 1000)))})
        ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": z, "TIME_VALUE": str(int(round(s.end * 1000)))})
    for i, s in enumerate(segments):
        name = f"{tier}@{s.speaker}" if s.speaker else tier
        if name not in tiers:
            attrs = {"TIER_ID": name, "LINGUISTIC_TYPE_REF": "transcription"}
            if s.speaker:
                attrs["PARTICIPANT"] = s.speaker
            tiers[name] = ET.SubElement(doc, "TIER", attrs)
        ann = ET.SubElement(ET.SubElement(tiers[name], "ANNOTATION"), "ALIGNABLE_ANNOTATION", {
            "ANNOTATION_ID": f"a{i + 1}", "TIME_SLOT_REF1": f"ts{2 * i + 1}", "TIME_SLOT_REF2": f"ts{2 * i + 2}"})
        ET.SubElement(ann, "ANNOTATION_VALUE").text = s.text
    if not tiers:
        tiers[tier] = ET.SubElement(doc, "TIER", {"TIER_ID": tier, "LINGUISTIC_TYPE_REF": "transcription"})
    if translation_lang:
        parents = dict(tiers)
        n = len(segments)
        for i, s in enumerate(segments):
            parent = f"{tier}@{s.speaker}" if s.speaker else tier
            name = f"translation-{translation_lang}" + (f"@{s.speaker}" if s.speaker else "")
            if name not in tiers:
                attrs = {"TIER_ID": name, "LINGUISTIC_TYPE_REF": "translation", "PARENT_REF": parent}
                if s.speaker:
                    attrs["PARTICIPANT"] = s.speaker
                tiers[name] = ET.SubElement(doc, "TIER", attrs)
            ann = ET.SubElement(ET.SubElement(tiers[name], "ANNOTATION"), "REF_ANNOTATION", {
                "ANNOTATION_ID": f"a{n + i + 1}", "ANNOTATION_REF": f"a{i + 1}"})
            ET.SubElement(ann, "ANNOTATION_VALUE").text = s.translation or ""
        if not segments:
            ET.SubElement(doc, "TIER", {"TIER_ID": f"translation-{translation_lang}", "LINGUISTIC_TYPE_REF":
                                        "translation", "PARENT_REF": next(iter(parents))})
    ET.SubElement(doc, "LINGUISTIC_TYPE", {"LINGUISTIC_TYPE_ID": "transcription", "TIME_ALIGNABLE": "true",
                                           "GRAPHIC_REFERENCES": "false"})
    if translation_lang:
        ET.SubElement(doc, "LINGUISTIC_TYPE", {"LINGUISTIC_TYPE_ID": "translation", "TIME_ALIGNABLE": "false",
                                               "CONSTRAINTS": "Symbolic_Association", "GRAPHIC_REFERENCES": "false"})
        ET.SubElement(doc, "CONSTRAINT", {"STEREOTYPE": "Symbolic_Association", "DESCRIPTION": "1-1 association "
                                          "with a parent annotation"})
    ET.indent(doc)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(doc, encoding="unicode") + "\n"


def to_html(segments: list[Segment], audio_src: str, title: str, note: str = "") -> str:
    """A one-page reader: the recording and its lines; clicking a line plays that stretch of audio.

    Every text is HTML-escaped (a transcript is data, never markup); the times travel as numbers in data
    attributes, and the script only reads them."""
    esc = html.escape
    rows = []
    for i, s in enumerate(segments):
        second = (f'<span class="tr" lang="">{esc(s.translation)}</span>' if s.translation is not None else "")
        rows.append(f'<li id="s{i + 1}" data-start="{s.start:.3f}" data-end="{s.end:.3f}" tabindex="0">'
                    f'<span class="t">{_clock(s.start, ".")[:-4]}</span> <span class="tx">{esc(s.text)}</span>'
                    f'{second}</li>')
    src = quote(audio_src)  # a relative URL: a file name with spaces, quotes or '#' stays one path
    return f"""<!DOCTYPE html>
<html lang="">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 48rem; margin: 1rem auto; padding: 0 1rem; }}
audio {{ width: 100%; position: sticky; top: 0; background: #fff; }}
ol {{ list-style: none; padding: 0; }}
li {{ padding: .4rem .5rem; border-bottom: 1px solid #ddd; cursor: pointer; }}
li:hover, li:focus, li.on {{ background: #fff4d6; }}
.t {{ color: #666; font-size: .8rem; font-variant-numeric: tabular-nums; }}
.tr {{ display: block; color: #345; font-style: italic; }}
</style>
</head>
<body>
<h1>{esc(title)}</h1>
<p>{esc(note)}</p>
<audio id="player" controls preload="metadata" src="{esc(src)}"></audio>
<ol id="lines">
{chr(10).join(rows)}
</ol>
<script>
const player = document.getElementById("player");
let stopAt = null;
function play(li) {{
  document.querySelectorAll("li.on").forEach(x => x.classList.remove("on"));
  li.classList.add("on");
  player.currentTime = parseFloat(li.dataset.start);
  stopAt = parseFloat(li.dataset.end);
  player.play();
}}
player.addEventListener("timeupdate", () => {{
  if (stopAt !== null && player.currentTime >= stopAt) {{ player.pause(); stopAt = null; }}
}});
document.querySelectorAll("#lines li").forEach(li => {{
  li.addEventListener("click", () => play(li));
  li.addEventListener("keydown", e => {{
    if (e.key === "Enter" || e.key === " ") {{ e.preventDefault(); play(li); }}
  }});
}});
</script>
</body>
</html>
"""


def write_atomic(path: Path, text: str) -> None:
    """Write TEXT to PATH via a temporary file, so a reader never sees half a transcript."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
