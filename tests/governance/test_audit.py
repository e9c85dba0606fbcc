"""The audit chain: intact when untouched; the first broken link found after an edit, a delete or a reorder."""

from __future__ import annotations

import json

from sqlalchemy import delete, select, update

from hearthkit.catalog.models import AuditEvent
from hearthkit.governance import audit
from hearthkit.launch.plan import record_data_access


def _chain(catalog, n=5):
    for i in range(n):
        audit.record(catalog, "label", "aroha", step=i)


def test_intact_chain_verifies(catalog):
    _chain(catalog)
    v = audit.verify(catalog)
    assert v.ok and v.events == 5 and v.head == audit.events(catalog)[-1]["hash"]


def test_edited_event_is_found(catalog):
    _chain(catalog)
    with catalog.session() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(data=json.dumps({"step": 99})))
    v = audit.verify(catalog)
    assert not v.ok and v.broken_seq == 3 and "altered" in v.reason and v.events == 2


def test_edit_that_rehashes_its_own_row_breaks_the_next_link(catalog):
    _chain(catalog)
    with catalog.session() as s:
        e = s.get(AuditEvent, 3)
        e.actor = "mallory"
        e.hash = audit.link_hash(e.prev_hash, e.seq, e.at, e.kind, e.actor, e.data)
    v = audit.verify(catalog)
    assert not v.ok and v.broken_seq == 4 and "does not link" in v.reason


def test_deleted_event_is_found(catalog):
    _chain(catalog)
    with catalog.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    v = audit.verify(catalog)
    assert not v.ok and v.broken_seq == 3 and "does not link" in v.reason


def test_reordered_events_are_found(catalog):
    _chain(catalog)
    with catalog.session() as s:  # swap events 2 and 3 by renumbering them
        s.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(seq=-2))
        s.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(seq=2))
        s.execute(update(AuditEvent).where(AuditEvent.seq == -2).values(seq=3))
    v = audit.verify(catalog)
    assert not v.ok and v.broken_seq == 2 and v.events == 1


def test_event_commits_with_the_change_or_not_at_all(catalog):
    try:
        with catalog.session() as s:
            audit.append(s, "label", "aroha", step=1)
            raise RuntimeError("the change failed")
    except RuntimeError:
        pass
    assert audit.events(catalog) == []


def test_run_data_access_is_recorded(catalog, tmp_path):
    run = tmp_path / "run"
    (run / "access").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"config": {"request": {"requester": "rangi"}},
                                              "manifest_hash": "ab" * 32}))
    (run / "access" / "rank0.jsonl").write_text('{"item_id": 1}\n{"item_id": 2}\n{"item_id": 1}\n')
    (run / "access" / "rank1.jsonl").write_text('{"item_id": 3}\n')
    assert record_data_access(catalog, run, "r1") == 3
    ev = audit.events(catalog, "data_access")[-1]
    assert ev["data"] == {"run": "r1", "run_id": None, "manifest": "ab" * 32, "items": 3}
    with catalog.session() as s:
        assert s.scalar(select(AuditEvent.kind).order_by(AuditEvent.seq.desc()).limit(1)) == "data_access"
