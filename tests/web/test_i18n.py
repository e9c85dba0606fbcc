"""Interface languages: every interface string is in the Spanish catalog, the shipped .mo files match their .po, and
the language comes from ?lang=, the cookie or Accept-Language."""

from __future__ import annotations

import io
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from hearthkit.web import i18n

WEB = Path(i18n.__file__).parent


def _extracted() -> set:
    """Every message id the templates and routes pass through gettext, extracted as `pybabel extract` does."""
    with (WEB / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    return {msg[2] if isinstance(msg[2], str) else tuple(msg[2])
            for msg in extract_from_dir(str(WEB), method_map, options_map)}


def _catalog(locale: str):
    with (WEB / "locale" / locale / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f)


def test_every_interface_string_is_translated_into_spanish():
    ids = _extracted()
    assert len(ids) > 50  # the extraction found the templates
    es = _catalog("es")
    missing = []
    for mid in sorted(ids, key=str):
        msg = es.get(mid if isinstance(mid, str) else mid[0])
        strings = msg.string if msg is not None else None
        if msg is None or msg.fuzzy or not (all(strings) if isinstance(strings, tuple) else strings):
            missing.append(mid)
    assert not missing, (f"{len(missing)} interface strings have no Spanish translation in "
                         f"src/hearthkit/web/locale/es/LC_MESSAGES/messages.po (see docs/web.md, Translating): "
                         f"{missing[:10]}")


def _messages(cat) -> dict:
    def key(x):
        return tuple(x) if isinstance(x, list | tuple) else x
    return {key(m.id): key(m.string) for m in cat if m.id}


def test_shipped_mo_files_match_their_po():
    for locale in i18n.LOCALES:
        base = WEB / "locale" / locale / "LC_MESSAGES"
        with (base / "messages.mo").open("rb") as f:
            shipped = _messages(read_mo(f))
        compiled = _messages(read_mo(io.BytesIO(i18n.compile_po(base / "messages.po"))))
        assert shipped == compiled, f"{base}/messages.mo is older than messages.po: recompile it (docs/web.md)"


def test_language_from_query_cookie_and_header(client):
    es = client.get("/login?lang=es")
    assert 'lang="es"' in es.text and "Entrar" in es.text
    assert client.cookies.get(i18n.COOKIE) == "es"
    assert "Contraseña" in client.get("/login").text  # the cookie keeps the choice
    client.cookies.clear()
    assert "Entrar" in client.get("/login", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"}).text
    assert "Sign in" in client.get("/login", headers={"Accept-Language": "fr, de"}).text
    assert "Sign in" in client.get("/login?lang=xx").text  # an unknown language reads as English


def test_missing_mo_is_compiled_in_memory(tmp_path, monkeypatch):
    """A checkout without the .mo (or an older one) still speaks Spanish: the .po is compiled in memory."""
    import shutil

    base = tmp_path / "es" / "LC_MESSAGES"
    base.mkdir(parents=True)
    shutil.copy(WEB / "locale" / "es" / "LC_MESSAGES" / "messages.po", base)
    monkeypatch.setattr(i18n, "LOCALE_DIR", tmp_path)
    i18n.translations.cache_clear()
    try:
        assert i18n.translations("es").gettext("Sign in") == "Entrar"
        assert not (base / "messages.mo").exists()  # nothing written beside the package
    finally:
        i18n.translations.cache_clear()


def test_language_switch_keeps_the_page_and_its_query(client):
    page = client.get("/search", params={"q": "words & more"}).text
    assert 'href="/search?q=words+%26+more&amp;lang=es"' in page
