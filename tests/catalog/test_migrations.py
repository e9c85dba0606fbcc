"""A workspace made at schema revision 0001 opens with the current code: migrated to head, nothing lost."""

from __future__ import annotations

import json

from sqlalchemy import create_engine, text

from hearthkit.catalog.db import Catalog, normalise_url, upgrade
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import compute_manifest

NOW = "2026-01-01 00:00:00+00:00"


def _old_catalog(url: str) -> None:
    """Build a 0001 catalog and fill it with rows as the walking skeleton wrote them (raw SQL: no new models)."""
    upgrade(url, "0001")
    eng = create_engine(normalise_url(url))
    with eng.begin() as c:
        c.execute(text("INSERT INTO collections (id, name, community, licence, citation, restricted, created_at) "
                       "VALUES (1, 'korero', 'Ngāti A', 'CC BY-NC 4.0', 'Korero 2026', false, :t)"), {"t": NOW})
        # Every recording names its speaker: one with none would need a no-identifiable-person declaration.
        items = [(1, "a", "mere", {"embargo_until": "2027-01-01"}), (2, "b", "mere", {}), (3, "c", "mere", {})]
        for iid, ext, speaker, meta in items:
            c.execute(text("INSERT INTO items (id, collection_id, external_id, kind, content_hash, size_bytes, "
                           "speaker, text, meta, imported_at) VALUES (:i, 1, :e, 'audio', :h, 10, :s, 'kia ora', "
                           ":m, :t)"), {"i": iid, "e": ext, "h": f"{iid:064d}", "s": speaker, "m": json.dumps(meta),
                                        "t": NOW})
        labels = [(1, 2, "tk:seasonal", {"from": "05-01", "to": "08-31"}),
                  (2, 3, "tk:women_general", {"members": ["aroha", "mere"]}),
                  (3, 3, "tk:commercial", {"agreement": "council minute 12"})]
        for lid, iid, key, data in labels:
            c.execute(text("INSERT INTO labels (id, item_id, key, community, text, language, data, applied_at) "
                           "VALUES (:l, :i, :k, 'Ngāti A', 'our words', 'mi', :d, :t)"),
                      {"l": lid, "i": iid, "k": key, "d": json.dumps(data), "t": NOW})
        for cid, scope, subject in [(1, "collective", "Ngāti A"), (2, "individual", "mere")]:
            c.execute(text("INSERT INTO consents (id, collection_id, scope, subject, given_by, given_at, purposes, "
                           "evidence) VALUES (:c, 1, :sc, :su, 'council', :t, :p, 'minutes')"),
                      {"c": cid, "sc": scope, "su": subject, "t": NOW,
                       "p": json.dumps(["research", "community_use", "commercial"])})
        c.execute(text("INSERT INTO runs (id, name, recipe, purpose, requester, manifest_hash, status, config, "
                       "created_at) VALUES (1, 'old-run', 'asr', 'research', 'rangi', :h, 'finished', '{}', :t)"),
                  {"h": "f" * 64, "t": NOW})
    eng.dispose()


def test_upgrade_from_0001_keeps_every_row_and_moves_rules_into_columns(db_url):
    _old_catalog(db_url)
    cat = Catalog.open(db_url)  # the current code: migrates because the schema is behind
    try:
        assert not cat.needs_upgrade()
        with cat.engine.connect() as c:
            assert c.execute(text("SELECT count(*) FROM items")).scalar() == 3
            assert c.execute(text("SELECT count(*) FROM consents")).scalar() == 2
            assert c.execute(text("SELECT name FROM runs")).scalar() == "old-run"
            assert c.execute(text("SELECT licence, citation FROM collections")).one() == ("CC BY-NC 4.0", "Korero 2026")
            assert str(c.execute(text("SELECT embargo_until FROM items WHERE id = 1")).scalar()) == "2027-01-01"
            assert c.execute(text("SELECT sharing FROM items WHERE id = 2")).scalar() == "all"
            assert c.execute(text("SELECT season_from, season_to, text, language FROM labels WHERE id = 1")).one() \
                == ("05-01", "08-31", "our words", "mi")
            assert c.execute(text("SELECT agreement FROM labels WHERE id = 3")).scalar() == "council minute 12"
            assert c.execute(text("SELECT name FROM communities")).scalar() == "Ngāti A"
            members = c.execute(text("SELECT p.name FROM protocol_members m JOIN people p ON p.id = m.person_id "
                                     "JOIN labels l ON l.protocol_id = m.protocol_id WHERE l.id = 2 ORDER BY p.name"))
            assert [r[0] for r in members] == ["aroha", "mere"]
        # The migrated facts still govern: embargo, season and the migrated protocol all apply.
        man = compute_manifest(cat, Request("research", "aroha", ("korero",), "2026-06-01"))
        assert [e["external_id"] for e in man.included] == ["b", "c"]
        assert man.excluded[0]["rule"] == "embargo"
        out = compute_manifest(cat, Request("research", "rangi", ("korero",), "2026-10-01"))
        assert {e["external_id"]: e["rule"] for e in out.excluded} == {
            "a": "embargo", "b": "tk:seasonal", "c": "tk:women_general"}
    finally:
        cat.close()
