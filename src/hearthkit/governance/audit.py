"""The tamper-evident audit log: append-only events, each hash-chained to the one before (VISION §4 Audit)."""

from __future__ import annotations

import getpass
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AuditEvent
from hearthkit.governance import anchor

GENESIS = "0" * 64  # the "previous hash" of the first event
KINDS = {"import", "label", "consent", "withdrawal", "protocol", "person", "manifest", "request", "approval",
         "denial", "data_access", "export", "declaration",
         "serve", "serve_refused", "external_model",  # serving a model, a refused use, a steward-registered folder
         "revocation",  # a steward revoked a model outright (lineage/revoke.py)
         "base_model",  # a pretrained base registered with its terms (lineage/base.py)
         # Identity (governance/identity.py): sign-ins (refused ones with the name as typed, never the password),
         # sign-outs, accounts (create, password reset/change, disable/enable) and API tokens (create, revoke).
         "sign_in", "sign_in_refused", "sign_out", "account", "api_token"}
_PG_LOCK = 7_042_011  # advisory lock id that serialises appends on PostgreSQL


def default_actor() -> str:
    """Who is acting when no steward is named: the operating-system user."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def link_hash(prev_hash: str, seq: int, at: str, kind: str, actor: str, data: str) -> str:
    """The hash of one event: sha256 over the previous hash and the event's stored fields."""
    payload = json.dumps([seq, at, kind, actor, data], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + payload).encode("utf-8")).hexdigest()


def append(s: Session, kind: str, actor: str | None = None, **data) -> AuditEvent:
    """Add an event inside session S, so it commits (or rolls back) with the change it records."""
    if kind not in KINDS:
        raise ValueError(f"unknown audit event kind {kind!r}")
    if s.get_bind().dialect.name == "postgresql":
        # Two writers must not both read the same head and fork the chain; the lock ends with the transaction.
        s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    elif s.get_bind().dialect.name == "sqlite":
        # A write statement takes SQLite's write lock now (a deferred transaction would read the head unlocked,
        # and two appenders would both link to it: one fails on prev_hash). Matches no row, changes nothing.
        s.execute(text("UPDATE audit_events SET seq = seq WHERE seq < 0"))
    last = s.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)).first()
    seq, prev = (last.seq + 1, last.hash) if last else (1, GENESIS)
    at = datetime.now(UTC).isoformat(timespec="microseconds")
    actor = actor or default_actor()
    body = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    ev = AuditEvent(seq=seq, at=at, kind=kind, actor=actor, data=body, prev_hash=prev,
                    hash=link_hash(prev, seq, at, kind, actor, body))
    s.add(ev)
    s.flush()  # a concurrent append that raced us fails here on the unique prev_hash, not silently
    anchor.note_append(s, seq, ev.hash, at)  # the head anchor outside the workspace moves once S commits
    return ev


def record(catalog: Catalog, kind: str, actor: str | None = None, **data) -> str:
    """Append one event in its own transaction; return its hash."""
    with catalog.session() as s:
        return append(s, kind, actor, **data).hash


@dataclass(frozen=True)
class Verdict:
    """Result of walking the chain: ok, events checked, head hash, and the first broken link if any."""

    ok: bool
    events: int
    head: str
    broken_seq: int | None = None
    reason: str | None = None


def verify(catalog: Catalog) -> Verdict:
    """Walk the chain in order; report the first event whose link or content does not hold."""
    prev, expected_seq, n = GENESIS, 1, 0
    with catalog.session() as s:
        rows = s.execute(select(AuditEvent.seq, AuditEvent.at, AuditEvent.kind, AuditEvent.actor, AuditEvent.data,
                                AuditEvent.prev_hash, AuditEvent.hash).order_by(AuditEvent.seq))
        for r in rows:
            if r.prev_hash != prev:
                return Verdict(False, n, prev, r.seq, f"event {r.seq} ({r.kind}) does not link to the event before it: "
                               "an earlier event was deleted, edited or moved")
            if r.seq != expected_seq:
                return Verdict(False, n, prev, r.seq, f"event {r.seq} ({r.kind}) follows event {expected_seq - 1}: "
                               "events in between are missing or renumbered")
            if link_hash(r.prev_hash, r.seq, r.at, r.kind, r.actor, r.data) != r.hash:
                return Verdict(False, n, prev, r.seq, f"event {r.seq} ({r.kind}) was altered: its content no longer "
                               "matches its hash")
            prev, expected_seq, n = r.hash, expected_seq + 1, n + 1
    return Verdict(True, n, prev)


def events(catalog: Catalog, kind: str | None = None) -> list[dict]:
    """All events (optionally of one kind), oldest first, with their data decoded."""
    with catalog.session() as s:
        q = select(AuditEvent).order_by(AuditEvent.seq)
        if kind:
            q = q.where(AuditEvent.kind == kind)
        return [{"seq": e.seq, "at": e.at, "kind": e.kind, "actor": e.actor, "data": json.loads(e.data),
                 "hash": e.hash} for e in s.scalars(q)]
