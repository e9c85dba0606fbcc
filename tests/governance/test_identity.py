"""Accounts, passwords, sessions and API tokens in the library (no web): what is stored and when it stops working."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from hearthkit.catalog.models import Account, ApiToken, Person, WebSession
from hearthkit.errors import HearthError
from hearthkit.governance import identity


@pytest.fixture
def person(catalog) -> int:
    with catalog.session() as s:
        p = Person(name="mere")
        s.add(p)
        s.flush()
        return p.id


def test_passwords_are_argon2_and_one_time_first(catalog, person):
    pw = identity.reset_password(catalog, "mere")
    with catalog.session() as s:
        acc = s.scalar(select(Account))
        assert acc.password_hash.startswith("$argon2") and pw not in acc.password_hash and acc.must_change
    assert identity.authenticate(catalog, "mere", pw).must_change
    with pytest.raises(HearthError, match="at least"):
        identity.change_password(catalog, person, pw, "short")
    with pytest.raises(HearthError, match="current password is wrong"):
        identity.change_password(catalog, person, "nope", "long enough password")
    identity.change_password(catalog, person, pw, "long enough password")
    assert not identity.authenticate(catalog, "mere", "long enough password").must_change
    with pytest.raises(identity.SignInRefused):
        identity.authenticate(catalog, "mere", pw)  # the one-time password is gone


def test_unknown_name_and_wrong_password_read_alike(catalog, person):
    identity.reset_password(catalog, "mere")
    with pytest.raises(identity.SignInRefused) as a:
        identity.authenticate(catalog, "nobody", "x")
    with pytest.raises(identity.SignInRefused) as b:
        identity.authenticate(catalog, "mere", "x")
    assert str(a.value) == str(b.value) == identity.REFUSED


def test_disabled_account_cannot_sign_in_or_use_sessions(catalog, person):
    pw = identity.reset_password(catalog, "mere")
    raw = identity.start_session(catalog, person)
    with catalog.session() as s:
        s.execute(update(Account).values(disabled_at=datetime.now(UTC)))
    assert identity.session_person(catalog, raw) is None
    with pytest.raises(identity.SignInRefused):
        identity.authenticate(catalog, "mere", pw)


def test_sessions_are_stored_hashed_and_expire(catalog, person):
    identity.reset_password(catalog, "mere")
    raw = identity.start_session(catalog, person)
    with catalog.session() as s:
        row = s.scalar(select(WebSession))
        assert row.token_hash == identity.token_hash(raw) and raw not in row.token_hash
    assert identity.session_person(catalog, raw) == person
    with catalog.session() as s:
        s.execute(update(WebSession).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert identity.session_person(catalog, raw) is None
    raw2 = identity.start_session(catalog, person)
    identity.end_session(catalog, raw2)
    assert identity.session_person(catalog, raw2) is None
    assert identity.session_person(catalog, "made-up") is None


def test_tokens_scoped_revocable_expiring(catalog, person):
    with pytest.raises(HearthError, match="not one of"):
        identity.create_token(catalog, "mere", "t", [])
    with pytest.raises(HearthError, match="not one of"):
        identity.create_token(catalog, "mere", "t", ["read", "sudo"])
    with pytest.raises(HearthError, match="unknown"):
        identity.create_token(catalog, "nobody", "t", ["read"])
    tid, raw = identity.create_token(catalog, "mere", "t", ["read", "read", "transcribe"], days=1)
    assert identity.token_person(catalog, raw) == (person, frozenset({"read", "transcribe"}))
    with catalog.session() as s:
        t = s.get(ApiToken, tid)
        assert t.scopes == ["read", "transcribe"] and t.last_used_at is not None
    with pytest.raises(HearthError):
        identity.revoke_token(catalog, tid, person_id=person + 1)  # someone else's: reads as unknown
    identity.revoke_token(catalog, tid, person_id=person)
    assert identity.token_person(catalog, raw) is None
    tid2, raw2 = identity.create_token(catalog, "mere", "t", ["read"], days=1)
    with catalog.session() as s:
        s.execute(update(ApiToken).where(ApiToken.id == tid2).values(expires_at=datetime.now(UTC)
                                                                      - timedelta(seconds=1)))
    assert identity.token_person(catalog, raw2) is None
    assert [t.id for t in identity.tokens(catalog, person)] == [tid2, tid]
