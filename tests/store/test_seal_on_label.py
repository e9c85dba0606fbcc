"""Issue 19, class 6: a label or protocol that requires sealing seals a clear collection at once, or is refused.

Real archives (soundfile WAVs and transcripts), real workspaces and stores, the CLI in-process and the library;
the PostgreSQL case runs when `make test` (scripts/with-postgres.sh) provides a server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AuditEvent, Community, Item, ItemProtocol, Label, Membership, Person, Protocol
from hearthkit.cli.main import app
from hearthkit.errors import HearthError
from hearthkit.governance.stewardship import apply_label, assign_protocol
from hearthkit.ingest.sealing import item_words
from hearthkit.ingest.speech_folder import import_speech_folder
from hearthkit.store.text import SEALED_TEXT
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace
from tests.catalog.conftest import db_url  # noqa: F401  (the SQLite + PostgreSQL fixture)
from tests.ingest.archive_maker import speech_items, write_info
from tests.store.test_no_plaintext import files_containing, pcm_patterns

COMMUNITY = "Test Community"


def clear_archive(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """Three recordings with distinctive transcripts, no labels: imported in the clear. Returns the transcripts."""
    folder = tmp_path / "archive"
    speech_items(folder, 3)
    words = {}
    for i, wav in enumerate(sorted(folder.glob("*.wav"))):
        text = f"he kōrero tapu nō te whānau {i} o te awa"
        wav.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        words[wav.stem] = text.encode("utf-8")
    write_info(folder)
    return folder, words


def steward(catalog: Catalog, community: str = COMMUNITY, name: str = "aroha") -> None:
    """Make NAME a steward of COMMUNITY directly in the catalog (how stewards are granted is not tested here)."""
    with catalog.session() as s:
        comm = s.scalar(select(Community).where(Community.name == community)) or Community(name=community)
        person = Person(name=name)
        s.add_all([comm, person])
        s.flush()
        s.add(Membership(community_id=comm.id, person_id=person.id, role="steward"))


def cli(ws: Path, *args: str):
    return CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})


def test_secret_label_on_one_item_seals_the_whole_clear_collection_cli(tmp_path, workspace):
    folder, words = clear_archive(tmp_path)
    patterns = pcm_patterns(folder)
    ws = open_workspace(workspace)
    catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)
    report = import_speech_folder(catalog, store, folder)
    assert not report.sealed and report.imported == 3
    assert files_containing(workspace, patterns) and files_containing(workspace, words)  # the search finds them
    steward(catalog)

    res = cli(workspace, "labels", "apply", "tk:secret_sacred", "-c", "test-coll", "-i", "utt001", "--by", "aroha")
    assert res.exit_code == 0, res.output
    assert "collection test-coll is sealed" in res.output
    assert files_containing(workspace, patterns) == []  # no recording of the collection left in the clear
    assert files_containing(workspace, words) == []  # nor its words, in the catalog's rows, pages or log
    with catalog.session() as s:
        items = s.scalars(select(Item).order_by(Item.external_id)).all()
        assert all(store.is_sealed(i.content_hash) and not store.plain.has(i.content_hash) for i in items)
        assert [item_words(store, i)[0].encode() for i in items] == [words[i.external_id] for i in items]
        event = s.scalars(select(AuditEvent).where(AuditEvent.kind == "label")).one()
    assert '"sealed":[3,3]' in event.data


def test_protocol_assignment_seals_the_collection(tmp_path, db_url):  # noqa: F811
    folder, words = clear_archive(tmp_path)
    catalog = Catalog.open(db_url, create=True)
    store = Store(tmp_path / "store", tmp_path / "keys")
    import_speech_folder(catalog, store, folder)
    steward(catalog)
    with catalog.session() as s:
        s.add(Protocol(name="whanau", community_id=s.scalar(select(Community.id))))
    n = assign_protocol(catalog, "whanau", "test-coll", ["utt000"], by="aroha", store=store)
    assert n == 1
    patterns = pcm_patterns(folder)
    assert files_containing(tmp_path / "store", patterns) == []
    with catalog.session() as s:
        for it in s.scalars(select(Item)):
            assert store.is_sealed(it.content_hash) and it.text is None and SEALED_TEXT in it.meta
            assert not any(w.decode() in repr(it.meta) for w in words.values())


def test_label_refused_and_nothing_changed_when_the_collection_cannot_be_sealed(tmp_path, workspace):
    folder, words = clear_archive(tmp_path)
    ws = open_workspace(workspace)
    keys = tmp_path / "blocked-keys"
    keys.write_text("not a folder")  # no community key can be made here
    catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, keys)
    import_speech_folder(catalog, store, folder)
    steward(catalog)
    with pytest.raises(HearthError, match="label tk:women_restricted was not recorded: collection 'test-coll' "
                                          "could not be sealed"):
        apply_label(catalog, "tk:women_restricted", "test-coll", "aroha", store=store)
    res = CliRunner().invoke(app, ["labels", "apply", "tk:clan", "-c", "test-coll", "--by", "aroha"],
                             env={"HEARTH_WORKSPACE": str(workspace), "HEARTH_KEYS": str(keys), "COLUMNS": "200"})
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "could not be sealed" in res.stderr
    with pytest.raises(HearthError, match="could not be sealed"):
        _assign_with_protocol(catalog, store)
    with catalog.session() as s:
        assert s.scalars(select(Label)).all() == [] and s.scalars(select(ItemProtocol)).all() == []
        assert s.scalars(select(AuditEvent).where(AuditEvent.kind.in_(["label", "protocol"]))).all() == []
        assert all(store.plain.has(i.content_hash) for i in s.scalars(select(Item)))  # untouched, still readable


def _assign_with_protocol(catalog: Catalog, store: Store) -> None:
    with catalog.session() as s:
        s.add(Protocol(name="whanau", community_id=s.scalar(select(Community.id))))
    assign_protocol(catalog, "whanau", "test-coll", None, "aroha", store=store)


def test_a_label_that_needs_no_sealing_needs_no_store(tmp_path, workspace):
    folder, _ = clear_archive(tmp_path)
    ws = open_workspace(workspace)
    catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)
    import_speech_folder(catalog, store, folder)
    steward(catalog)
    apply_label(catalog, "tk:non_commercial", "test-coll", "aroha")
    with pytest.raises(HearthError, match="no store was given"):
        apply_label(catalog, "tk:secret_sacred", "test-coll", "aroha")
    with catalog.session() as s:
        assert s.scalars(select(Label.key)).all() == ["tk:non_commercial"]
        assert all(store.plain.has(i.content_hash) for i in s.scalars(select(Item)))


def test_protocol_assign_cli_seals_and_says_so(tmp_path, workspace):
    folder, words = clear_archive(tmp_path)
    ws = open_workspace(workspace)
    catalog, store = Catalog.open(ws.db_url), Store(ws.store_dir, ws.keys_dir)
    import_speech_folder(catalog, store, folder)
    steward(catalog)
    assert cli(workspace, "protocol", "create", "whanau", "--community", COMMUNITY, "--by", "aroha").exit_code == 0
    res = cli(workspace, "protocol", "assign", "whanau", "-c", "test-coll", "-i", "utt002", "--by", "aroha")
    assert res.exit_code == 0 and "collection test-coll is sealed" in res.output, res.output
    assert files_containing(workspace, pcm_patterns(folder)) == [] and files_containing(workspace, words) == []
    # `hearth keys seal` counts the placement as a reason to seal, and finds nothing left to do.
    assert "test-coll: 0 objects encrypted, transcripts of 0 items sealed" in cli(workspace, "keys", "seal").output
