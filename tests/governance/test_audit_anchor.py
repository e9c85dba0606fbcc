"""The audit head anchored outside the workspace: a cut tail, a rebuilt log and a forged anchor are found by default."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog.conftest import db_url  # noqa: E402,F401  (the SQLite + PostgreSQL fixture)
from conftest import hearth  # noqa: E402

from hearthkit.catalog.context import bind, open_workspace_catalog  # noqa: E402
from hearthkit.catalog.db import Catalog  # noqa: E402
from hearthkit.catalog.models import AuditEvent  # noqa: E402
from hearthkit.governance import anchor, audit  # noqa: E402
from hearthkit.workspace import Workspace, WorkspaceConfig, init_workspace  # noqa: E402


@pytest.fixture
def bound(db_url: str, tmp_path: Path):  # noqa: F811
    """A workspace on each backend with its catalog bound to it, and five events appended."""
    root = tmp_path / "ws"
    root.mkdir()
    ws = Workspace(root, WorkspaceConfig(name="ws", db_url=db_url))
    cat = bind(Catalog.open(db_url, create=True), ws)
    for i in range(5):
        audit.record(cat, "label", "aroha", step=i)
    yield ws, cat
    cat.close()


def _cut_after(cat: Catalog, seq: int) -> None:
    with cat.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq > seq))


def test_every_commit_moves_a_signed_anchor_kept_outside_the_workspace(bound):
    ws, cat = bound
    path = anchor.anchor_path(ws)
    assert ws.root not in path.parents and path.is_file()
    doc = json.loads(path.read_text())
    assert doc["seq"] == 5 and doc["hash"] == audit.events(cat)[-1]["hash"]
    for f in (path, ws.keys_dir / "audit-anchor.secret"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    v = anchor.check(cat)
    assert v.ok and v.state == "anchored" and v.seq == 5


def test_a_rolled_back_append_does_not_move_the_anchor(bound):
    ws, cat = bound
    with pytest.raises(RuntimeError), cat.session() as s:
        audit.append(s, "label", "aroha", step=99)
        raise RuntimeError("the change failed")
    assert json.loads(anchor.anchor_path(ws).read_text())["seq"] == 5


def test_a_cut_tail_is_found_although_the_chain_itself_verifies(bound):
    _, cat = bound
    _cut_after(cat, 3)
    assert audit.verify(cat).ok  # what was left is a consistent prefix: only the anchor can tell
    v = anchor.check(cat)
    assert not v.ok and v.state == "truncated" and "ends at event 3" in v.message and "event 5" in v.message


def test_deleting_everything_is_a_cut_tail(bound):
    _, cat = bound
    _cut_after(cat, 0)
    v = anchor.check(cat)
    assert not v.ok and v.state == "truncated"


def test_a_log_rebuilt_from_scratch_is_found_by_an_outside_tool_or_by_the_app(bound, db_url):  # noqa: F811
    ws, cat = bound
    _cut_after(cat, 0)
    outsider = Catalog.open(db_url)  # the attacker's own connection: not bound to the workspace
    for i in range(7):
        audit.record(outsider, "label", "mallory", step=i)
    outsider.close()
    assert audit.verify(cat).ok
    v = anchor.check(cat)
    assert not v.ok and v.state == "rewritten" and "event 5" in v.message
    # Appending through the workspace now must not launder the rebuilt log into the anchor.
    audit.record(cat, "label", "aroha", step=8)
    assert json.loads(anchor.anchor_path(ws).read_text())["seq"] == 5
    assert anchor.check(cat).state == "rewritten"


@pytest.mark.parametrize("tamper", ["edit", "resign", "garbage", "no-secret"])
def test_a_forged_or_unverifiable_anchor_is_reported(bound, tamper):
    ws, cat = bound
    path = anchor.anchor_path(ws)
    _cut_after(cat, 2)
    doc = json.loads(path.read_text())
    if tamper == "edit":  # make the anchor agree with the cut log
        doc.update(seq=2, hash=audit.events(cat)[-1]["hash"])
        path.write_text(json.dumps(doc))
    elif tamper == "resign":  # ... and sign it with a key of one's own
        doc.update(seq=2, hash=audit.events(cat)[-1]["hash"])
        doc["mac"] = anchor._mac(os.urandom(32), doc)
        path.write_text(json.dumps(doc))
    elif tamper == "garbage":
        path.write_text("{not json")
    else:
        (ws.keys_dir / "audit-anchor.secret").unlink()
    v = anchor.check(cat)
    assert not v.ok and v.state == "forged"


def test_missing_anchor_new_workspace_versus_deleted(bound, tmp_path):
    ws, cat = bound
    anchor.anchor_path(ws).unlink()
    v = anchor.check(cat)
    assert not v.ok and v.state == "unanchored" and "5 events but no head anchor" in v.message
    fresh = init_workspace(tmp_path / "fresh")
    cat2 = open_workspace_catalog(fresh)
    assert anchor.check(cat2).state == "new" and anchor.check(cat2).ok
    cat2.close()


def test_the_anchor_never_moves_backwards(bound):
    ws, cat = bound
    first = audit.events(cat)[0]
    assert not anchor.advance(ws, cat.engine, 1, first["hash"], first["at"])
    assert json.loads(anchor.anchor_path(ws).read_text())["seq"] == 5


def test_hearth_audit_verify_checks_the_anchor_by_default(tmp_path: Path):
    ws = init_workspace(tmp_path / "ws")
    cat = open_workspace_catalog(ws)
    for i in range(4):
        audit.record(cat, "label", "aroha", step=i)
    out = hearth("audit", "verify", ws=ws.root).stdout
    assert "audit chain intact: 4 events" in out and "anchored at event 4" in out
    _cut_after(cat, 2)
    proc = hearth("audit", "verify", ws=ws.root, check=False)
    assert proc.returncode == 1 and "audit log truncated" in proc.stdout and "ends at event 2" in proc.stdout
    anchor.anchor_path(ws).unlink()
    proc = hearth("audit", "verify", ws=ws.root, check=False)
    assert proc.returncode == 1 and "UNANCHORED" in proc.stdout
    assert hearth("audit", "verify", "--allow-unanchored", ws=ws.root).returncode == 0
    assert "anchored the audit log at event 2" in hearth("audit", "anchor", ws=ws.root).stdout
    assert "anchored at event 2" in hearth("audit", "verify", ws=ws.root).stdout
    cat.close()
