"""Issue 19, class 7 (import part): every committed batch has its import event, in the same transaction.

The killed-process case is tests/ingest/test_kill_import.py (SQLite, the real CLI); here an import fails inside a
later batch on both backends (SQLite, and PostgreSQL when `make test` provides one), through the library.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

import hearthkit.ingest.speech_folder as sf
from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item
from hearthkit.governance.audit import events, verify
from hearthkit.store.vault import Store
from tests.catalog.conftest import db_url  # noqa: F401  (the SQLite + PostgreSQL fixture)
from tests.ingest.archive_maker import speech_items, write_info


def logged(catalog: Catalog) -> list[str]:
    """Item ids the import events list; each event's count matches its list."""
    evs = events(catalog, "import")
    assert all(e["data"]["imported"] == len(e["data"]["items"]) for e in evs)
    return sorted(i for e in evs for i in e["data"]["items"])


def test_a_failed_later_batch_leaves_an_event_for_every_stored_item(tmp_path, db_url, monkeypatch):  # noqa: F811
    folder = tmp_path / "archive"
    speech_items(folder, 7)
    write_info(folder)
    catalog, store = Catalog.open(db_url, create=True), Store(tmp_path / "store", tmp_path / "keys")
    real, calls = sf._Importer.commit, []

    def third_batch_fails(self, pending, final=False):
        calls.append(len(pending))
        if len(calls) == 3:
            raise RuntimeError("power cut")  # a crash between batches 2 and 3, as a kill would be
        return real(self, pending, final)

    monkeypatch.setattr(sf._Importer, "commit", third_batch_fails)
    with pytest.raises(RuntimeError):
        sf.import_speech_folder(catalog, store, folder, batch_size=2)
    with catalog.session() as s:
        stored = sorted(s.scalars(select(Item.external_id)))
    assert stored == ["utt000", "utt001", "utt002", "utt003"] and logged(catalog) == stored

    monkeypatch.setattr(sf._Importer, "commit", real)
    report = sf.import_speech_folder(catalog, store, folder, batch_size=2)
    assert (report.imported, report.unchanged) == (3, 4)
    assert logged(catalog) == [f"utt{i:03d}" for i in range(7)]
    last = events(catalog, "import")[-1]["data"]
    assert last["done"] is True and last["unchanged"] == 4 and last["skipped"] == 0
    assert verify(catalog).ok
