"""The audit log's head anchored outside the workspace: a signed (seq, hash, at) record in the key folder.

After every committed append the head is written to `<key folder>/audit-head-<workspace>.json`, MAC'd with a
secret kept beside the community keys. Whoever can rewrite the catalog (cut its tail, rebuild a consistent chain)
cannot move the anchor, so `hearth audit verify` finds a cut tail, a rewritten chain or a forged anchor by default.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hearthkit.catalog.context import workspace_of
from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AuditEvent
from hearthkit.errors import HearthError
from hearthkit.store.cas import atomic_write
from hearthkit.store.keys import community_slug, local_secret

SECRET = "audit-anchor"  # <key folder>/audit-anchor.secret
FORMAT = "hearthkit-audit-anchor/1"
_PENDING = "hearthkit_audit_head"  # session.info key: the newest event this transaction appended


def anchor_path(ws) -> Path:
    """Where workspace WS's anchor lives: its key folder, one file per workspace name."""
    return ws.keys_dir / f"audit-head-{community_slug(ws.config.name)}.json"


def _mac(key: bytes, doc: dict) -> str:
    body = json.dumps({k: doc[k] for k in sorted(doc) if k != "mac"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(key, body.encode("utf-8"), hashlib.sha256).hexdigest()


def note_append(s: Session, seq: int, digest: str, at: str) -> None:
    """Remember in session S that it appended event SEQ; the anchor moves only once S commits."""
    s.info[_PENDING] = (seq, digest, at)


@event.listens_for(Session, "after_commit")
def _after_commit(s: Session) -> None:
    head = s.info.pop(_PENDING, None)
    if head is None:
        return
    bind = s.get_bind()
    ws = workspace_of(bind)
    if ws is None:  # a catalog opened without its workspace (library use): nothing to anchor to
        return
    try:
        advance(ws, bind, *head)
    except (OSError, HearthError) as exc:
        # The change is committed; failing the command now would hide that. Say so: verify will report the lag.
        print(f"warning: audit head anchor not updated ({exc}); `hearth audit verify` will show the lag",
              file=sys.stderr)


@event.listens_for(Session, "after_rollback")
def _after_rollback(s: Session) -> None:
    s.info.pop(_PENDING, None)


def _read(path: Path, key: bytes) -> dict:
    """The anchor at PATH if its MAC verifies; a HearthError naming what is wrong otherwise."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        ok = isinstance(doc, dict) and doc.get("format") == FORMAT and isinstance(doc.get("seq"), int) \
            and isinstance(doc.get("hash"), str) and isinstance(doc.get("mac"), str)
    except (OSError, ValueError, UnicodeDecodeError):
        ok, doc = False, None
    if not ok:
        raise HearthError(f"{path}: not a readable audit anchor")
    if not hmac.compare_digest(_mac(key, doc), doc["mac"]):
        raise HearthError(f"{path}: the anchor's signature does not verify: it was edited or forged")
    return doc


def _hash_at(engine: Engine, seq: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(select(AuditEvent.hash).where(AuditEvent.seq == seq)).scalar()


def advance(ws, engine: Engine, seq: int, digest: str, at: str, force: bool = False) -> bool:
    """Move WS's anchor to event SEQ when it is newer and extends the anchored chain; True when written.

    Never backwards (appenders on PostgreSQL commit in any order), and never onto a chain that no longer holds the
    anchored event (unless FORCE, the owner's re-anchor): a rebuilt log must not launder itself through the anchor.
    """
    path = anchor_path(ws)
    key = local_secret(ws.keys_dir, SECRET)
    # The lock file sits beside key material: created 0600 like everything in the key folder.
    lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(lock_fd, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # read-compare-write by one process at a time
        if path.exists() and not force:
            cur = _read(path, key)
            if cur["seq"] >= seq:
                return False
            if _hash_at(engine, cur["seq"]) != cur["hash"]:
                raise HearthError(f"the log no longer holds anchored event {cur['seq']}; the anchor stays as evidence")
        doc = {"format": FORMAT, "workspace": ws.config.name, "seq": seq, "hash": digest, "at": at,
               "anchored_at": datetime.now(UTC).isoformat(timespec="seconds")}
        doc["mac"] = _mac(key, doc)
        atomic_write(path, json.dumps(doc, indent=1).encode(), mode=0o600)
    return True


@dataclass(frozen=True)
class AnchorVerdict:
    """What the anchor says about the chain: ok, a state word, and one line for a steward."""

    ok: bool
    state: str  # anchored | new | unanchored | truncated | rewritten | forged | unbound
    message: str
    seq: int | None = None


def check(catalog: Catalog, ws=None) -> AnchorVerdict:
    """Compare the catalog's chain with the workspace's anchor (call after `audit.verify` found the chain intact)."""
    ws = ws or workspace_of(catalog)
    if ws is None:
        return AnchorVerdict(False, "unbound", "this catalog was opened without its workspace: no anchor to check")
    path = anchor_path(ws)
    with catalog.session() as s:
        last, n = s.execute(select(func.max(AuditEvent.seq), func.count())).one()
    if not path.exists():
        if not n:
            return AnchorVerdict(True, "new", "no events and no anchor yet (a new workspace)")
        return AnchorVerdict(False, "unanchored", f"{n} events but no head anchor at {path}: it was deleted, the key "
                             "folder moved, or the log predates anchoring; if you know why, the workspace owner "
                             "re-anchors with `hearth audit anchor`")
    secret = ws.keys_dir / f"{SECRET}.secret"
    if not secret.is_file():
        return AnchorVerdict(False, "forged", f"{path} exists but its key {secret} is missing: the anchor cannot be "
                             "verified; restore the key folder from your backup")
    try:
        doc = _read(path, local_secret(ws.keys_dir, SECRET))
    except HearthError as exc:
        return AnchorVerdict(False, "forged", str(exc))
    seq = doc["seq"]
    if last is None or seq > last:
        return AnchorVerdict(False, "truncated", f"the log ends at event {last or 0} but the anchor (written "
                             f"{doc.get('anchored_at')}) records event {seq}: events after {last or 0} were cut off",
                             seq)
    if _hash_at(catalog.engine, seq) != doc["hash"]:
        return AnchorVerdict(False, "rewritten", f"event {seq} is not the event the anchor recorded "
                             f"({doc['hash'][:12]}…): the log was rewritten", seq)
    lag = f"; {last - seq} later events appended without the anchor" if last > seq else ""
    return AnchorVerdict(True, "anchored", f"anchored at event {seq} ({path}){lag}", seq)


def reanchor(catalog: Catalog, ws) -> int:
    """Anchor the current head whatever the old anchor said (the owner's act, after verifying the chain)."""
    with catalog.session() as s:
        row = s.execute(select(AuditEvent.seq, AuditEvent.hash, AuditEvent.at)
                        .order_by(AuditEvent.seq.desc()).limit(1)).first()
    if row is None:
        raise HearthError("the audit log is empty: nothing to anchor")
    advance(ws, catalog.engine, row.seq, row.hash, row.at, force=True)
    return row.seq
