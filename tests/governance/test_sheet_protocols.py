"""Issue 19 class 2: the import sheet's `protocols` column is enforced by the policy, not only by encryption.

Attacked from the CSV sheet through the CLI, from a YAML sheet through the library, and with meta written straight
into the catalog on SQLite and PostgreSQL (PostgreSQL's driver hands meta back as a dict, SQLite's as text).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from builder import Builder
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.cli.main import app
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import compute_manifest
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace
from tests.catalog.conftest import db_url  # noqa: F401  (the SQLite + PostgreSQL fixture)
from tests.ingest.archive_maker import speech_items, write_info

MISSING = "which does not exist; a steward must create it"


def _verdicts(man) -> dict[str, str | None]:
    out: dict[str, str | None] = {e["external_id"]: None for e in man.included}
    out.update({e["external_id"]: f"{e['rule']}: {e['reason']}" for e in man.excluded})
    return out


@pytest.fixture
def pb(db_url: str) -> Builder:  # noqa: F811
    cat = Catalog.open(db_url, create=True)
    yield Builder(cat)
    cat.close()


def test_meta_protocols_bind_the_item_on_both_backends(pb: Builder):
    c = pb.collection()
    pb.consent(c, "individual", "kui", ["research"])
    pb.item(c, "plain", speaker="kui")  # takes the fast path: nothing restricts it
    pb.item(c, "women", speaker="kui", meta={"protocols": ["women"]})
    pb.item(c, "both", speaker="kui", meta={"protocols": ["women", "elders"]})
    pb.item(c, "either", speaker="kui", meta={"protocols": ["women", "elders"]}, sharing="any")
    pb.item(c, "ghost", speaker="kui", meta={"protocols": ["women", "no-such"]}, sharing="any")
    pb.item(c, "note", speaker="kui", meta={"note": "the protocols were read aloud"})  # a false hit of the text
    pb.protocol("women", members=("mere",))
    pb.protocol("elders", members=("hemi",))
    outside = _verdicts(pb.manifest(requester="rangi"))
    assert outside["plain"] is None and outside["note"] is None
    for ext in ("women", "both", "either"):
        assert outside[ext].startswith("protocol: requester rangi is"), outside[ext]
    assert outside["ghost"].startswith("protocol: the import sheet places this item under protocol 'no-such'")
    assert MISSING in outside["ghost"]
    mere = _verdicts(pb.manifest(requester="mere"))
    assert mere["women"] is None and mere["either"] is None
    assert "not in every protocol" in mere["both"]
    assert MISSING in mere["ghost"]  # sharing any does not let a missing protocol through
    man = pb.manifest(requester="mere")
    assert "protocol:women" in man.restrictions  # the model inherits the sheet's protocol like an assigned one


def test_unreadable_protocols_value_excludes(b: Builder):
    c = b.collection()
    b.item(c, "num", meta={"protocols": 7})
    b.item(c, "empty", meta={"protocols": []})
    b.item(c, "text", meta={"protocols": "women"})  # a single name, not a list: read as that name
    b.protocol("women", members=("mere",))
    got = _verdicts(b.manifest(requester="mere"))
    assert "unreadable" in got["num"] and "unreadable" in got["empty"]
    assert got["text"] is None
    assert "protocol" in _verdicts(b.manifest(requester="rangi"))["text"]


def test_csv_sheet_through_the_cli(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 3)
    write_info(folder)
    (folder / "metadata.csv").write_text(
        "file,speaker,protocols,consent_purposes,consent_given_by,consent_given_at\n"
        "*,kui,,research,kui,2026-02-01\n"
        "utt001.wav,,women-knowledge,,,\n"
        "utt002.wav,,missing-protocol,,,\n", encoding="utf-8")
    env = {"HEARTH_WORKSPACE": str(workspace), "COLUMNS": "200"}

    def hearth(*args: str) -> str:
        res = CliRunner().invoke(app, list(args), env=env)
        assert res.exit_code == 0, res.output
        return " ".join(res.output.split())

    hearth("data", "import", str(folder))
    hearth("people", "add", "aroha", "--community", "Test Community", "--role", "steward", "--as-owner")
    hearth("people", "add", "mere", "--community", "Test Community", "--role", "member", "--by", "aroha")
    hearth("protocol", "create", "women-knowledge", "--community", "Test Community", "--by", "aroha")
    hearth("protocol", "add-member", "women-knowledge", "mere", "--by", "aroha")
    show = ("data", "show", "test-coll")
    assert "included" in hearth(*show, "utt000", "--requester", "rangi")
    out = hearth(*show, "utt001", "--requester", "rangi")
    assert "excluded" in out and "protocol: requester rangi is not in every protocol" in out
    assert "protocols named by the import sheet: ['women-knowledge'] (sharing all)" in out
    assert "included for purpose research, requester mere" in hearth(*show, "utt001", "--requester", "mere")
    out = hearth(*show, "utt002", "--requester", "mere")
    assert "the import sheet places this item under protocol 'missing-protocol'" in out and MISSING in out


def test_yaml_sheet_through_the_library(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    ids = speech_items(folder, 2)
    write_info(folder, layout={"sheet": "people.yaml"})
    (folder / "people.yaml").write_text(
        "- {file: '*', speaker: kui, consent_purposes: [research], consent_given_by: kui, "
        "consent_given_at: '2026-02-01'}\n"
        f"- {{file: {ids[1]}, protocols: [women]}}\n", encoding="utf-8")
    ws = open_workspace(workspace)
    catalog = Catalog.open(ws.db_url)
    try:
        report = import_speech_folder(catalog, Store(ws.store_dir, ws.keys_dir), folder)
        assert report.problems == [] and report.imported == 2
        b = Builder(catalog)
        man = compute_manifest(catalog, Request("research", "rangi", ("test-coll",), "2026-06-01"))
        got = _verdicts(man)
        assert got[ids[0]] is None
        assert MISSING in got[ids[1]]  # the protocol named by the sheet was never created
        b.protocol("women", community="Test Community", members=("mere",))
        got = _verdicts(compute_manifest(catalog, Request("research", "rangi", ("test-coll",), "2026-06-01")))
        assert got[ids[1]].startswith("protocol: requester rangi")
        man = compute_manifest(catalog, Request("research", "mere", ("test-coll",), "2026-06-01"))
        assert _verdicts(man)[ids[1]] is None and "protocol:women" in man.restrictions
    finally:
        catalog.close()
