"""Time-aligned transcript files: WebVTT, SubRip (SRT) and ELAN (.eaf), written atomically."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    """One stretch of speech: start and end in seconds, its text, and who speaks (if known)."""

    start: float
    end: float
    text: str
    speaker: str | None = None


def _clock(t: float, sep: str) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_vtt(segments: list[Segment]) -> str:
    """WebVTT text (cues numbered from 1, `HH:MM:SS.mmm`)."""
    lines = ["WEBVTT", ""]
    for i, s in enumerate(segments, 1):
        lines += [str(i), f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}", s.text or "…", ""]
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
        out.append(Segment(_seconds(a), _seconds(z), " ".join(lines[idx + 1:])))
    return out


def _seconds(clock: str) -> float:
    parts = clock.replace(",", ".").split(":")
    return sum(float(p) * 60**i for i, p in enumerate(reversed(parts)))


def to_eaf(segments: list[Segment], media: Path, tier: str = "transcription", author: str = "hearthkit") -> str:
    """An ELAN 3.0 annotation document: one time-aligned tier per speaker (or one tier), linked to MEDIA."""
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
        ET.SubElement(doc, "TIER", {"TIER_ID": tier, "LINGUISTIC_TYPE_REF": "transcription"})
    ET.SubElement(doc, "LINGUISTIC_TYPE", {"LINGUISTIC_TYPE_ID": "transcription", "TIME_ALIGNABLE": "true",
                                           "GRAPHIC_REFERENCES": "false"})
    ET.indent(doc)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(doc, encoding="unicode") + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write TEXT to PATH via a temporary file, so a reader never sees half a transcript."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
