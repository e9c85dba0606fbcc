"""Read Praat TextGrid files (long and short text formats, UTF-8 or UTF-16): interval tiers -> annotations."""

from __future__ import annotations

import re
from pathlib import Path

from hearthkit.errors import HearthError
from hearthkit.ingest.segments import Annotation

# Strings ("" escapes a quote), numbers and the <exists> flag; key names and [n] indices of the long format
# are dropped, which leaves the same value sequence as the short format.
TOKEN = re.compile(r'"((?:[^"]|"")*)"|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(<exists>|<absent>)')


def _decode(data: bytes, path: Path) -> str:
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HearthError(f"{path}: neither UTF-8 nor UTF-16 (byte {exc.start}); re-save it from Praat") from None


def read_textgrid(path: Path, tiers: list[str] | None = None) -> list[Annotation]:
    """Annotations of the interval tiers of PATH (all, or those named in TIERS); point tiers are skipped."""
    text = _decode(Path(path).read_bytes(), path)
    text = re.sub(r"\[\s*\d*\s*\]", "", text)
    toks: list[tuple] = []
    for m in TOKEN.finditer(text):
        if m.group(1) is not None:
            toks.append((m.group(1).replace('""', '"'), "s"))
        elif m.group(2) is not None:
            toks.append((float(m.group(2)), "n"))
        else:
            toks.append((m.group(3), "f"))
    pos = 0

    def take(kind: str):
        nonlocal pos
        if pos >= len(toks) or toks[pos][1] != kind:
            raise HearthError(f"{path}: not a Praat TextGrid (unexpected content near value {pos + 1}); "
                              "save it from Praat as a text file")
        pos += 1
        return toks[pos - 1][0]

    if take("s") != "ooTextFile" or take("s") != "TextGrid":
        raise HearthError(f"{path}: not a Praat TextGrid (missing 'ooTextFile' / 'TextGrid' header)")
    take("n"), take("n")
    if take("f") != "<exists>":
        return []
    n_tiers = int(take("n"))
    out: list[Annotation] = []
    for _ in range(n_tiers):
        cls, name = take("s"), take("s")
        take("n"), take("n")
        n = int(take("n"))
        for _ in range(n):
            if cls == "IntervalTier":
                a, z, label = take("n"), take("n"), take("s")
                if (tiers is None or name in tiers) and label.strip():
                    out.append(Annotation(a, z, label, name, None))
            else:  # TextTier: points have no duration, so no segment to cut
                take("n"), take("s")
    if tiers:
        known = {a.tier for a in out}
        missing = sorted(set(tiers) - known)
        if missing:
            raise HearthError(f"{path}: no interval tier named {', '.join(missing)} with text")
    return sorted(out, key=lambda a: (a.start, a.tier))
