"""Interface languages: gettext catalogs (Babel) and the locale of a request (?lang=, cookie, Accept-Language)."""

from __future__ import annotations

import functools
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from fastapi import Request

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
LOCALES = {"en": "English", "es": "Español"}  # code -> the language's own name, for the switch
DEFAULT = "en"
COOKIE = "hk_lang"


@functools.cache
def translations(locale: str) -> NullTranslations:
    """The catalog of LOCALE: the compiled .mo, or the .po compiled in memory when the .mo is missing or older."""
    base = LOCALE_DIR / locale / "LC_MESSAGES"
    po, mo = base / f"{DOMAIN}.po", base / f"{DOMAIN}.mo"
    if mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as f:
            return Translations(f, domain=DOMAIN)
    if po.is_file():
        return Translations(io.BytesIO(compile_po(po)), domain=DOMAIN)
    return NullTranslations()


def compile_po(po: Path) -> bytes:
    """The .mo bytes of PO (fuzzy entries left out, as msgfmt does)."""
    with po.open("rb") as f:
        cat = read_po(f)
    buf = io.BytesIO()
    write_mo(buf, cat)
    return buf.getvalue()


def pick_locale(request: Request) -> str:
    """?lang= first, then the language cookie, then the browser's Accept-Language, else English."""
    for cand in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if cand in LOCALES:
            return cand
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        for cand in (tag, tag.split("-")[0]):
            if cand in LOCALES:
                return cand
    return DEFAULT
