"""Read ELAN .eaf files (hardened XML parsing): time-aligned tiers -> annotations with speaker and tier."""

from __future__ import annotations

from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from hearthkit.errors import HearthError
from hearthkit.ingest.segments import Annotation

TRANSLATION = "translation:"  # Annotation.extra key prefix of a translation tier's text (then its language)
ALIGN_S = 0.02  # a time-aligned translation matches a transcription span within 20 ms at each end


def translation_language_of(tier_id: str) -> str:
    """The language named in a tier id such as `translation-fr` or `translation-fr@mere` (else `und`)."""
    base = tier_id.split("@")[0]
    for sep in ("-", "_", " ", ":"):
        if sep in base:
            lang = base.rsplit(sep, 1)[1].strip()
            if lang and lang.lower() != "translation":
                return lang
    return "und"


def translation_language(tier, types: dict) -> str | None:
    """The language of TIER when it is a translation tier whose language is known, else None.

    A translation tier says so by its linguistic type or id (`translation…`); its language comes from LANG_REF or
    the id (`translation-fr`). Without a language it stays a dependent tier kept by name: a language is not guessed.
    """
    tid = tier.get("TIER_ID", "")
    ltype = tier.get("LINGUISTIC_TYPE_REF", "")
    if "translation" not in ltype.lower() and not tid.lower().startswith("translation"):
        return None
    if tier.get("LANG_REF"):
        return tier.get("LANG_REF")
    lang = translation_language_of(tid) if tid.lower().startswith("translation") else "und"
    return None if lang == "und" else lang


def parse_xml(path: Path, what: str):
    """The root element of PATH, refusing DTDs, entities and external references (billion laughs, XXE)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HearthError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return SafeET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise HearthError(f"{path}: refused: the XML declares a DTD or entities ({type(exc).__name__}), which {what} "
                          "files never need and XML bombs use; nothing was imported") from None
    except SafeET.ParseError as exc:
        raise HearthError(f"{path}: not well-formed XML ({exc}); fix or re-export it from {what}") from None


def read_eaf(path: Path, tiers: list[str] | None = None) -> tuple[list[Annotation], list[str]]:
    """Annotations of the time-aligned tiers of PATH (all, or those named in TIERS) and the media file names."""
    root = parse_xml(path, "ELAN")
    if root.tag != "ANNOTATION_DOCUMENT":
        raise HearthError(f"{path}: not an ELAN file (root element <{root.tag}>, expected <ANNOTATION_DOCUMENT>)")
    media = [m.get("RELATIVE_MEDIA_URL") or m.get("MEDIA_URL") or "" for m in root.iter("MEDIA_DESCRIPTOR")]
    slots: dict[str, float | None] = {}
    for ts in root.iter("TIME_SLOT"):
        v = ts.get("TIME_VALUE")
        try:
            slots[ts.get("TIME_SLOT_ID", "")] = int(v) / 1000 if v is not None else None
        except ValueError:
            raise HearthError(f"{path}: time slot {ts.get('TIME_SLOT_ID')!r} has value {v!r}, "
                              "not milliseconds") from None
    aligned: dict[str, Annotation] = {}
    unaligned: set[str] = set()  # annotation ids whose slots have no time (ELAN interpolates them)
    refs: list[tuple[str, str, str, str, str]] = []  # (extra key, tier, annotation id, referenced id, value)
    spans: list[tuple[str, str, float, float, str, str]] = []  # time-aligned translations: tier, id, times, value, lang
    known = {t.get("TIER_ID") for t in root.iter("TIER")}
    missing = sorted(set(tiers or []) - known)
    if missing:
        raise HearthError(f"{path}: no tier named {', '.join(missing)} (tiers: {', '.join(sorted(map(str, known)))})")
    types = {t.get("LINGUISTIC_TYPE_ID", ""): t for t in root.iter("LINGUISTIC_TYPE")}
    for tier in root.iter("TIER"):
        name = tier.get("TIER_ID", "")
        speaker = tier.get("PARTICIPANT") or None
        lang = translation_language(tier, types)
        for ann in tier.iter("ALIGNABLE_ANNOTATION"):
            aid = ann.get("ANNOTATION_ID", "")
            a, z = slots.get(ann.get("TIME_SLOT_REF1", "")), slots.get(ann.get("TIME_SLOT_REF2", ""))
            if a is None or z is None:
                unaligned.add(aid)
                continue  # unaligned slots: ELAN interpolates them; without times there is no segment to cut
            if lang is not None:
                spans.append((name, aid, a, z, ann.findtext("ANNOTATION_VALUE") or "", lang))
                continue
            aligned[aid] = Annotation(a, z, ann.findtext("ANNOTATION_VALUE") or "", name, speaker)
        for ref in tier.iter("REF_ANNOTATION"):
            key = f"{TRANSLATION}{lang}" if lang is not None else name
            refs.append((key, name, ref.get("ANNOTATION_ID", ""), ref.get("ANNOTATION_REF", ""),
                         ref.findtext("ANNOTATION_VALUE") or ""))
    # Dependent (symbolic) tiers such as a translation travel with the segment they annotate; a reference to an
    # annotation the file does not hold means the tiers do not align, and nothing is imported.
    extra: dict[str, dict] = {}
    for key, tier_name, aid, target, value in refs:
        if target in unaligned:
            continue
        if target not in aligned:
            raise HearthError(f"{path}: the tiers do not align: annotation {aid!r} on tier {tier_name!r} refers "
                              f"to {target!r}, which no time-aligned tier holds; fix it in ELAN; nothing was imported")
        if value.strip():
            extra.setdefault(target, {})[key] = value.strip()
    # A time-aligned translation tier must cover exactly the spans of the transcription it translates.
    for name, aid, a, z, value, lang in spans:
        match = [i for i, x in aligned.items() if abs(x.start - a) <= ALIGN_S and abs(x.end - z) <= ALIGN_S]
        if not match:
            raise HearthError(f"{path}: the tiers do not align: translation {aid!r} on tier {name!r} ({a:.3f}-{z:.3f} "
                              "s) matches the span of no transcription annotation; align it in ELAN; nothing was "
                              "imported")
        if value.strip():
            for i in match:
                extra.setdefault(i, {})[f"{TRANSLATION}{lang}"] = value.strip()
    out = [Annotation(a.start, a.end, a.text, a.tier, a.speaker, extra.get(i, {}))
           for i, a in aligned.items() if tiers is None or a.tier in tiers]
    return sorted(out, key=lambda a: (a.start, a.tier)), media
