"""Read ELAN .eaf files (hardened XML parsing): time-aligned tiers -> annotations with speaker and tier."""

from __future__ import annotations

from pathlib import Path

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from hearthkit.errors import HearthError
from hearthkit.ingest.segments import Annotation


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
    refs: list[tuple[str, str, str]] = []  # (tier, referenced annotation id, value)
    known = {t.get("TIER_ID") for t in root.iter("TIER")}
    missing = sorted(set(tiers or []) - known)
    if missing:
        raise HearthError(f"{path}: no tier named {', '.join(missing)} (tiers: {', '.join(sorted(map(str, known)))})")
    for tier in root.iter("TIER"):
        name = tier.get("TIER_ID", "")
        speaker = tier.get("PARTICIPANT") or None
        for ann in tier.iter("ALIGNABLE_ANNOTATION"):
            a, z = slots.get(ann.get("TIME_SLOT_REF1", "")), slots.get(ann.get("TIME_SLOT_REF2", ""))
            if a is None or z is None:
                continue  # unaligned slots: ELAN interpolates them; without times there is no segment to cut
            aligned[ann.get("ANNOTATION_ID", "")] = Annotation(a, z, ann.findtext("ANNOTATION_VALUE") or "", name,
                                                               speaker)
        for ref in tier.iter("REF_ANNOTATION"):
            refs.append((name, ref.get("ANNOTATION_REF", ""), ref.findtext("ANNOTATION_VALUE") or ""))
    # Dependent (symbolic) tiers such as a translation travel with the segment they annotate.
    extra: dict[str, dict] = {}
    for tier_name, target, value in refs:
        if target in aligned and value.strip():
            extra.setdefault(target, {})[tier_name] = value.strip()
    out = [Annotation(a.start, a.end, a.text, a.tier, a.speaker, extra.get(i, {}))
           for i, a in aligned.items() if tiers is None or a.tier in tiers]
    return sorted(out, key=lambda a: (a.start, a.tier)), media
