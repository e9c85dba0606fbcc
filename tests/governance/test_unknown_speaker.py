"""Issue 19 class 4: a recording with no speaker recorded is not "nobody": it needs a steward's declaration that
no identifiable person is in it (per item or per collection), else rule `unknown_speaker` excludes it.

From the library (SQLite and PostgreSQL: the declarations table and its dates on both), from the CLI on a real
imported CSV-sheet archive, and the steward action's checks and audit events.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builder import Builder
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.cli.main import app
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.stewardship import declare_no_person, revoke_declaration
from tests.catalog.conftest import db_url  # noqa: F401  (the SQLite + PostgreSQL fixture)
from tests.ingest.archive_maker import speech_items, write_info


@pytest.fixture
def pb(db_url: str) -> Builder:  # noqa: F811
    cat = Catalog.open(db_url, create=True)
    yield Builder(cat)
    cat.close()


def test_recording_without_speaker_needs_a_declaration(pb: Builder):
    c = pb.collection(declared=False)
    a = pb.item(c, "anon")
    pb.item(c, "blank", speaker="")  # an empty speaker field is no speaker either
    pb.item(c, "words", kind="text")  # a text, not a recording: collective consent is enough
    pb.item(c, "tile", kind="raster")
    rule, reason = pb.verdict("anon")
    assert rule == "unknown_speaker" and "no speaker recorded" in reason and "declare-no-person" in reason
    assert "steward of A" in reason
    assert pb.verdict("blank")[0] == "unknown_speaker"
    assert pb.verdict("words") == (None, None) and pb.verdict("tile") == (None, None)
    pb.declare(c, item=a)
    assert pb.verdict("anon") == (None, None)
    assert pb.verdict("blank")[0] == "unknown_speaker"  # a declaration covers its own item only
    pb.declare(c)
    assert pb.verdict("blank") == (None, None)


def test_declaration_is_judged_at_as_of(pb: Builder):
    c = pb.collection(declared=False)
    a = pb.item(c, "a")
    pb.declare(c, item=a, at="2026-03-01", revoked="2026-05-01")
    assert pb.verdict("a", as_of="2026-02-28")[0] == "unknown_speaker"  # not made yet
    assert pb.verdict("a", as_of="2026-04-01") == (None, None)
    assert pb.verdict("a", as_of="2026-06-01")[0] == "unknown_speaker"  # revoked


def test_declaration_does_not_replace_a_named_speakers_consent(b: Builder):
    c = b.collection()  # declared free of identifiable people, yet this item names one
    b.item(c, "m", speaker="mere")
    assert b.verdict("m")[0] == "individual_consent"


def test_fast_path_does_not_let_an_undeclared_recording_through(b: Builder):
    c = b.collection(declared=False)
    b.consent(c, "individual", "mere", ["research"])
    for k in range(50):  # a plain collection: every item would take the fast path
        b.item(c, f"m{k:02d}", speaker="mere")
    b.item(c, "zz")
    man = b.manifest()
    assert len(man.included) == 50 and [e["rule"] for e in man.excluded] == ["unknown_speaker"]


def test_steward_declares_and_revokes_audited(b: Builder):
    c = b.collection(declared=False)
    b.item(c, "a")
    b.person("aroha", "A", "steward")
    b.person("mere", "A", "member")
    with pytest.raises(HearthError, match="mere is not a steward of A"):
        declare_no_person(b.catalog, "korero", "mere", "birdsong", "a")
    with pytest.raises(HearthError, match="--note is required"):
        declare_no_person(b.catalog, "korero", "aroha", " ", "a")
    with pytest.raises(HearthError, match="item 'zz' is not in collection korero"):
        declare_no_person(b.catalog, "korero", "aroha", "birdsong", "zz")
    assert b.verdict("a", as_of=_today())[0] == "unknown_speaker"  # refused attempts changed nothing
    did = declare_no_person(b.catalog, "korero", "aroha", "birdsong only, checked by listening", "a")
    assert b.verdict("a", as_of=_today()) == (None, None)
    with pytest.raises(HearthError, match="mere is not a steward of A"):
        revoke_declaration(b.catalog, did, "mere")
    revoke_declaration(b.catalog, did, "aroha")
    assert b.verdict("a", as_of=_today())[0] == "unknown_speaker"
    with pytest.raises(HearthError, match=f"declaration {did} was already revoked"):
        revoke_declaration(b.catalog, did, "aroha")
    events = audit.events(b.catalog, "declaration")
    assert [(e["actor"], e["data"]["action"]) for e in events] == [("aroha", "declare"), ("aroha", "revoke")]
    assert events[0]["data"]["note"] == "birdsong only, checked by listening"
    assert audit.verify(b.catalog).ok


def _today() -> str:
    from datetime import date

    return date.today().isoformat()


def test_cli_on_an_imported_sheet_without_speakers(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 2)
    write_info(folder)
    (folder / "metadata.csv").write_text(  # utt001 has no speaker in the sheet
        "file,speaker,consent_purposes,consent_given_by,consent_given_at\n"
        "utt000.wav,kui,research,kui,2026-02-01\n"
        "utt001.wav,,,,\n", encoding="utf-8")
    env = {"HEARTH_WORKSPACE": str(workspace), "COLUMNS": "200"}

    def hearth(*args: str, code: int = 0) -> str:
        res = CliRunner().invoke(app, list(args), env=env)
        assert res.exit_code == code, res.output
        if code == 2:
            assert len(res.stderr.strip().splitlines()) == 1, res.stderr
            return res.stderr
        return " ".join(res.output.split())

    hearth("data", "import", str(folder))
    hearth("people", "add", "aroha", "--community", "Test Community", "--role", "steward", "--as-owner")
    assert "included" in hearth("data", "show", "test-coll", "utt000")
    out = hearth("data", "show", "test-coll", "utt001")
    assert "excluded" in out and "unknown_speaker: a recording with no speaker recorded" in out
    assert "is not a steward" in hearth("consent", "declare-no-person", "test-coll", "--item", "utt001", "--by",
                                        "kui", "--note", "x", code=2)
    assert "--note is required" in hearth("consent", "declare-no-person", "test-coll", "--item", "utt001",
                                          "--by", "aroha", code=2)
    out = hearth("consent", "declare-no-person", "test-coll", "--item", "utt001", "--by", "aroha", "--note",
                 "a tone test, no voice")
    did = out.split()[1].rstrip(":")
    out = hearth("data", "show", "test-coll", "utt001")
    assert "included" in out and f"declaration {did}: no_identifiable_person (this item) by aroha" in out
    assert "in force: a tone test, no voice" in out
    hearth("consent", "revoke-declaration", did, "--by", "aroha")
    out = hearth("data", "show", "test-coll", "utt001")
    assert "unknown_speaker" in out and f"declaration {did}: " in out and "revoked" in out
    assert "declaration" in hearth("audit", "log", "--kind", "declaration")
