"""Accounts of catalog people: argon2 passwords, lockout, browser sessions and scoped API tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import (
    Account,
    ApiToken,
    Community,
    Membership,
    Person,
    Protocol,
    ProtocolMember,
    WebSession,
)
from hearthkit.errors import HearthError
from hearthkit.governance import audit

SCOPES = ("read", "request", "approve", "transcribe", "translate", "monitor", "admin")
MIN_PASSWORD = 10
FREE_FAILURES = 5  # failed sign-ins before the account locks
SESSION_TTL = timedelta(hours=12)
_hasher = PasswordHasher()
# Verified against when the name is unknown, so an unknown name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("not a real password; compared only to equalise timing")
REFUSED = "sign-in refused: the name or password is wrong, or the account is locked for a few minutes"


class SignInRefused(HearthError):
    """A failed sign-in; always the same words, whether the name exists, the password is wrong or it is locked."""

    def __init__(self) -> None:
        super().__init__(REFUSED)


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; the catalog stores UTC."""
    return t.replace(tzinfo=UTC) if t is not None and t.tzinfo is None else t


def token_hash(raw: str) -> str:
    """The stored form of a session id or API token: sha256 hex (the raw value is never stored)."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


def one_time_password() -> str:
    """A random password to hand to a person once; they choose their own at first sign-in."""
    return secrets.token_urlsafe(12)


def _person(s: Session, name: str) -> Person:
    p = s.scalar(select(Person).where(Person.name == name))
    if p is None:
        raise HearthError(f"person {name!r} is unknown; add them with `hearth users add`")
    return p


def _communities(s: Session, person_id: int) -> list[str]:
    """Communities PERSON_ID holds a role in: who may read this person's identity events (audit_view.concerns)."""
    return sorted(set(s.scalars(select(Community.name).join(Membership, Membership.community_id == Community.id)
                                .where(Membership.person_id == person_id))))


def _audit(s: Session, kind: str, actor: str | None, person: Person | None, **data) -> None:
    """An identity event in S's transaction, naming the person and their communities (never a secret)."""
    if person is not None:
        data.update(person=person.name, communities=_communities(s, person.id))
    audit.append(s, kind, actor, **data)


def _check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise HearthError(f"the new password must have at least {MIN_PASSWORD} characters")


def ensure_account(s: Session, person: Person, by: str | None = None) -> str | None:
    """Give PERSON an account with a one-time password (returned); None when they already have one. Audited."""
    if s.scalar(select(Account).where(Account.person_id == person.id)) is not None:
        return None
    pw = one_time_password()
    s.add(Account(person_id=person.id, password_hash=_hasher.hash(pw), must_change=True, failed_logins=0))
    s.flush()
    _audit(s, "account", by, person, action="create")
    return pw


def reset_password(catalog: Catalog, name: str, by: str | None = None) -> str:
    """A new one-time password for NAME (creating the account if needed); their sessions end. Audited."""
    pw = one_time_password()
    with catalog.session() as s:
        person = _person(s, name)
        acc = s.scalar(select(Account).where(Account.person_id == person.id))
        _audit(s, "account", by, person, action="password_reset" if acc is not None else "create")
        if acc is None:
            acc = Account(person_id=person.id, password_hash="", failed_logins=0)
            s.add(acc)
        acc.password_hash = _hasher.hash(pw)
        acc.must_change = True
        acc.failed_logins = 0
        acc.locked_until = None
        _end_sessions(s, person.id)
    return pw


def _lock_for(failures: int) -> timedelta:
    """Back-off: 1, 2, 4 … minutes after the free failures, at most a day."""
    return timedelta(minutes=min(2 ** (failures - FREE_FAILURES), 24 * 60))


@dataclass(frozen=True)
class SignedIn:
    """Who signed in, and whether they must choose a new password first."""

    person_id: int
    name: str
    must_change: bool


def authenticate(catalog: Catalog, name: str, password: str, client: str | None = None) -> SignedIn:
    """Check NAME's password; refuse with one message for every failure; count failures towards a lockout.

    Every attempt is an audit event (`sign_in` or `sign_in_refused`) with the name as typed and CLIENT (the
    address it came from); the password is never recorded, whatever was typed.
    """
    now = _now()
    typed = name[:200]
    with catalog.session() as s:
        row = s.execute(select(Person, Account).join(Account, Account.person_id == Person.id)
                        .where(Person.name == name)).first()
        person, acc = row if row is not None else (None, None)
        locked = _aware(acc.locked_until) if acc is not None else None
        if acc is None:
            _verify(_DUMMY_HASH, password)
            failed = "no account of that name"
        elif acc.disabled_at is not None or (locked is not None and locked > now):
            _verify(_DUMMY_HASH, password)
            failed = "account disabled" if acc.disabled_at is not None else "account locked"
        elif not _verify(acc.password_hash, password):
            acc.failed_logins += 1
            if acc.failed_logins >= FREE_FAILURES:
                acc.locked_until = now + _lock_for(acc.failed_logins)
            failed = "wrong password" + (" (account now locked)" if acc.locked_until is not None else "")
        else:
            acc.failed_logins = 0
            acc.locked_until = None
            if _hasher.check_needs_rehash(acc.password_hash):
                acc.password_hash = _hasher.hash(password)
            failed = None
        if failed:
            # The actor is whoever typed it, not the account: a failed attempt proves no identity.
            _audit(s, "sign_in_refused", "anonymous", person, name=typed, client=client, reason=failed,
                   **({"failures": acc.failed_logins} if acc is not None else {}))
        else:
            _audit(s, "sign_in", person.name, person, client=client)
            result = SignedIn(person.id, person.name, acc.must_change)
    if failed:  # raised after the commit, so the failure count and its audit event are stored
        raise SignInRefused()
    return result


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def change_password(catalog: Catalog, person_id: int, old: str, new: str) -> None:
    """Replace the password after checking the old one; every session of the person ends. Audited."""
    _check_new_password(new)
    if new == old:
        raise HearthError("the new password must differ from the old one")
    with catalog.session() as s:
        acc = s.scalar(select(Account).where(Account.person_id == person_id))
        if acc is None or not _verify(acc.password_hash, old):
            raise HearthError("the current password is wrong")
        acc.password_hash = _hasher.hash(new)
        acc.must_change = False
        _end_sessions(s, person_id)
        person = s.get(Person, person_id)
        _audit(s, "account", person.name, person, action="password_change")


def _end_sessions(s: Session, person_id: int) -> None:
    s.execute(update(WebSession).where(WebSession.person_id == person_id, WebSession.revoked_at.is_(None))
              .values(revoked_at=_now()))


def start_session(catalog: Catalog, person_id: int, ttl: timedelta = SESSION_TTL) -> str:
    """A new browser session for PERSON_ID; returns the raw id (only its hash is stored)."""
    raw = secrets.token_urlsafe(32)
    with catalog.session() as s:
        s.add(WebSession(token_hash=token_hash(raw), person_id=person_id, expires_at=_now() + ttl))
    return raw


def session_person(catalog: Catalog, raw: str) -> int | None:
    """The person of a live session RAW, or None (unknown, expired, revoked, account disabled)."""
    with catalog.session() as s:
        row = s.execute(select(WebSession, Account).join(Account, Account.person_id == WebSession.person_id)
                        .where(WebSession.token_hash == token_hash(raw))).first()
        if row is None:
            return None
        ses, acc = row
        if ses.revoked_at is not None or _aware(ses.expires_at) <= _now() or acc.disabled_at is not None:
            return None
        return ses.person_id


def session_must_change(catalog: Catalog, person_id: int) -> bool:
    """Whether PERSON_ID still holds a one-time password (and must choose one before anything else)."""
    with catalog.session() as s:
        return bool(s.scalar(select(Account.must_change).where(Account.person_id == person_id)))


def end_session(catalog: Catalog, raw: str, client: str | None = None) -> None:
    """Revoke session RAW (sign out); a live session's end is audited as `sign_out`."""
    with catalog.session() as s:
        ses = s.scalar(select(WebSession).where(WebSession.token_hash == token_hash(raw),
                                                WebSession.revoked_at.is_(None)))
        if ses is None:
            return
        ses.revoked_at = _now()
        person = s.get(Person, ses.person_id)
        _audit(s, "sign_out", person.name, person, client=client)


@dataclass(frozen=True)
class TokenInfo:
    """An API token as listed: never its raw value."""

    id: int
    person: str
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def create_token(catalog: Catalog, person: str, name: str, scopes: list[str], days: int | None = 90,
                 by: str | None = None) -> tuple[int, str]:
    """A new API token for PERSON with SCOPES (an allowlist); returns (id, raw token), shown once. Audited (never
    the token): BY is who made it (default: PERSON)."""
    bad = [x for x in scopes if x not in SCOPES]
    if bad or not scopes:
        raise HearthError(f"scope {', '.join(bad) or '(none)'} is not one of: {', '.join(SCOPES)}")
    if days is not None and days <= 0:
        raise HearthError("--days must be a positive number of days")
    raw = "hk_" + secrets.token_urlsafe(32)
    with catalog.session() as s:
        p = _person(s, person)
        t = ApiToken(person_id=p.id, name=name or "token", token_hash=token_hash(raw), scopes=sorted(set(scopes)),
                     expires_at=_now() + timedelta(days=days) if days else None)
        s.add(t)
        s.flush()
        _audit(s, "api_token", by or p.name, p, action="create", token=t.id, name=t.name, scopes=t.scopes,
               expires_at=t.expires_at.isoformat(timespec="seconds") if t.expires_at else None)
        return t.id, raw


def token_person(catalog: Catalog, raw: str) -> tuple[int, frozenset[str]] | None:
    """(person id, scopes) of a live API token RAW; None when unknown, expired or revoked."""
    now = _now()
    with catalog.session() as s:
        row = s.execute(select(ApiToken, Account).outerjoin(Account, Account.person_id == ApiToken.person_id)
                        .where(ApiToken.token_hash == token_hash(raw))).first()
        if row is None:
            return None
        tok, acc = row
        expires = _aware(tok.expires_at)
        if tok.revoked_at is not None or (expires is not None and expires <= now) or (
                acc is not None and acc.disabled_at is not None):
            return None
        tok.last_used_at = now
        return tok.person_id, frozenset(tok.scopes or ())


def revoke_token(catalog: Catalog, token_id: int, person_id: int | None = None, by: str | None = None) -> None:
    """Revoke token TOKEN_ID; with PERSON_ID, only when it is theirs (others' tokens read as unknown). Audited:
    BY is who revoked it (default: the token's person when PERSON_ID is given, else the operator)."""
    with catalog.session() as s:
        t = s.get(ApiToken, token_id)
        if t is None or (person_id is not None and t.person_id != person_id):
            raise HearthError(f"token {token_id} does not exist; see `hearth users token ls`")
        if t.revoked_at is None:
            t.revoked_at = _now()
            owner = s.get(Person, t.person_id)
            _audit(s, "api_token", by or (owner.name if person_id is not None else None), owner, action="revoke",
                   token=t.id, name=t.name)


def set_disabled(catalog: Catalog, name: str, disabled: bool, by: str | None = None) -> bool:
    """Disable (or enable again) NAME's account: sessions and tokens stop working at once. Audited; returns whether
    anything changed."""
    with catalog.session() as s:
        person = _person(s, name)
        acc = s.scalar(select(Account).where(Account.person_id == person.id))
        if acc is None:
            raise HearthError(f"{name} has no account; `hearth users passwd {name}` gives them one")
        if (acc.disabled_at is not None) == disabled:
            return False
        acc.disabled_at = _now() if disabled else None
        if disabled:
            _end_sessions(s, person.id)
        _audit(s, "account", by, person, action="disable" if disabled else "enable")
        return True


def tokens(catalog: Catalog, person_id: int | None = None) -> list[TokenInfo]:
    """API tokens (of one person, or all), newest first."""
    with catalog.session() as s:
        q = select(ApiToken, Person.name).join(Person, Person.id == ApiToken.person_id).order_by(ApiToken.id.desc())
        if person_id is not None:
            q = q.where(ApiToken.person_id == person_id)
        return [TokenInfo(t.id, n, t.name, tuple(t.scopes or ()), _aware(t.created_at), _aware(t.expires_at),
                          _aware(t.revoked_at), _aware(t.last_used_at)) for t, n in s.execute(q)]


@dataclass(frozen=True)
class Identity:
    """What the catalog says about a person: name, roles per community and the protocols they are inside."""

    person_id: int
    name: str
    roles: dict[str, frozenset[str]]
    protocols: frozenset[str]


def identity(catalog: Catalog, person_id: int) -> Identity | None:
    """Roles and protocols of PERSON_ID, read fresh (a role removed takes effect on the next request)."""
    with catalog.session() as s:
        p = s.get(Person, person_id)
        if p is None:
            return None
        roles: dict[str, set[str]] = {}
        for comm, role in s.execute(select(Community.name, Membership.role)
                                    .join(Membership, Membership.community_id == Community.id)
                                    .where(Membership.person_id == person_id)):
            roles.setdefault(comm, set()).add(role)
        prots = s.scalars(select(Protocol.name).join(ProtocolMember, ProtocolMember.protocol_id == Protocol.id)
                          .where(ProtocolMember.person_id == person_id))
        return Identity(p.id, p.name, {c: frozenset(r) for c, r in roles.items()}, frozenset(prots))


@dataclass(frozen=True)
class AccountRow:
    """One line of `hearth users ls`."""

    name: str
    roles: str
    must_change: bool
    locked: bool
    tokens: int


def accounts(catalog: Catalog) -> list[AccountRow]:
    """Every person with an account, their roles and state."""
    now = _now()
    out = []
    with catalog.session() as s:
        for person, acc in s.execute(select(Person, Account).join(Account, Account.person_id == Person.id)
                                     .order_by(Person.name)):
            roles = s.execute(select(Community.name, Membership.role)
                              .join(Membership, Membership.community_id == Community.id)
                              .where(Membership.person_id == person.id).order_by(Community.name, Membership.role))
            live = s.scalars(select(ApiToken.id).where(ApiToken.person_id == person.id,
                                                       ApiToken.revoked_at.is_(None))).all()
            locked = _aware(acc.locked_until)
            out.append(AccountRow(person.name, ", ".join(f"{r} of {c}" for c, r in roles) or "-", acc.must_change,
                                  bool(locked and locked > now), len(live)))
    return out
