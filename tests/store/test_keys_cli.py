"""`hearth keys seal|ls`: a collection that gains a protocol label is encrypted in place, clear copies erased."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item, Label
from hearthkit.store.vault import workspace_store
from hearthkit.workspace import open_workspace
from tests.conftest import hearth
from tests.ingest.archive_maker import speech_items, write_info


def test_seal_after_a_steward_applies_a_protocol_label(tmp_path: Path, workspace: Path):
    folder = tmp_path / "a"
    speech_items(folder, 3)
    write_info(folder)
    hearth("data", "import", str(folder), ws=workspace)
    ws = open_workspace(workspace)
    store = workspace_store(ws)
    catalog = Catalog.open(ws.db_url)
    with catalog.session() as s:
        items = s.scalars(select(Item)).all()
        digests = [i.content_hash for i in items]
        assert all(store.plain.has(d) for d in digests)
        s.add(Label(item_id=items[0].id, key="tk:women_restricted", community="Test Community"))
    out = hearth("keys", "seal", ws=workspace).stdout
    assert "test-coll: 3 objects encrypted, transcripts of 3 items sealed" in out
    with catalog.session() as s:
        assert all(i.text is None for i in s.scalars(select(Item)))  # the words left the catalog with the audio
    assert all(store.is_sealed(d) and not store.plain.has(d) for d in digests)
    assert [store.get(d) for d in digests] == [(folder / f"utt{i:03d}.wav").read_bytes() for i in range(3)]
    assert "test-coll: 0 objects encrypted" in hearth("keys", "seal", ws=workspace).stdout  # idempotent
    listing = hearth("keys", "ls", ws=workspace).stdout
    assert "test-coll" in listing and str(ws.keys_dir) in listing.replace("\n", "")
