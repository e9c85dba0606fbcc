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
    # Evaluation reads are audited apart (phase "evaluation", by evaluate_run), never as training reads.
    (run / "access" / "eval.jsonl").write_text('{"item_id": 9}\n')
    (run / "access" / "calibrate.jsonl").write_text('{"item_id": 1}\n{"item_id": 8}\n')
    assert record_data_access(catalog, run, "r1") == 3
    ev = audit.events(catalog, "data_access")[-1]
    assert ev["data"] == {"run": "r1", "run_id": None, "manifest": "ab" * 32, "phase": "training", "items": 3}
    with catalog.session() as s:
        assert s.scalar(select(AuditEvent.kind).order_by(AuditEvent.seq.desc()).limit(1)) == "data_access"


def test_a_withdrawal_event_carries_its_reason(b, catalog, tmp_path):
    from hearthkit.governance.stewardship import withdraw_consent
    from hearthkit.lineage.withdraw import withdraw
    from hearthkit.store.vault import Store

    coll = b.collection("korero", community="A")
    b.item(coll, "k1", speaker="mere")
    b.item(coll, "k2", speaker="tama")
    b.person("aroha", "A", role="steward")
    consent = b.consent(coll, "individual", "tama", ["research"])
    store = Store(tmp_path / "store", tmp_path / "keys")
    withdraw(catalog, store, "korero", "speaker", "mere", "aroha", reason="asked at the hui, 2026-11-30")
    withdraw_consent(catalog, consent, "aroha", reason="tama moved away and asked us to stop")
    reasons = [e["data"]["reason"] for e in audit.events(catalog, "withdrawal")]
    assert reasons == ["asked at the hui, 2026-11-30", "tama moved away and asked us to stop"]


def test_evaluation_reads_are_audited_as_their_own_phase(tiny_asr_model):
    import re

    from tests.conftest import hearth

    ws, _, _ = tiny_asr_model
    split = json.loads((ws / "runs" / "tiny-asr" / "split.json").read_text())

    def events():
        out = hearth("audit", "log", "--kind", "data_access", ws=ws).stdout
        return [json.loads(re.sub(r"^\s*\d+ \S+ data_access\s+\S+: ", "", line)) for line in out.splitlines()]

    before = events()
    assert [e["phase"] for e in before if e["run"] == "tiny-asr"][:2] == ["training", "evaluation"]
    at_train = next(e for e in before if e["run"] == "tiny-asr" and e["phase"] == "evaluation")
    assert at_train["items"] == len(split["test"]) > 0 and at_train["split"] == "test"
    hearth("eval", "tiny-asr", ws=ws)  # `hearth eval` reads the test items again: one more event
    after = events()
    assert len(after) == len(before) + 1
    assert after[-1]["phase"] == "evaluation" and after[-1]["items"] == len(split["test"])


def test_concurrent_appends_on_sqlite_all_land_in_one_chain(tmp_path):
    """Eight threads appending at once (as web workers serving models do) lose no event and fork nothing."""
    import threading

    from hearthkit.catalog.db import Catalog

    cat = Catalog.open(f"sqlite:///{tmp_path / 'c.sqlite'}", create=True)
    errors: list[str] = []

    def work(i: int) -> None:
        for j in range(10):
            try:
                audit.record(cat, "serve", "tester", worker=i, n=j)
            except Exception as exc:  # noqa: BLE001 — any failure is what the test counts
                errors.append(type(exc).__name__)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    verdict = audit.verify(cat)
    assert errors == []
    assert verdict.ok and verdict.events == 80
    cat.close()
