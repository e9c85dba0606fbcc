"""Identity events in the audit chain: sign-ins (refused ones without the password), sign-outs, accounts, tokens."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from hearthkit.catalog.models import AuditEvent
from hearthkit.errors import HearthError
from hearthkit.governance import audit, identity
from hearthkit.governance.stewardship import add_person

SECRET = "not-my-password-7f3a9"  # a wrong password a test then searches the whole audit table for


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch):
    """Argon2 with the smallest cost: the same code paths, a fraction of the CPU (hashes carry their parameters)."""
    from argon2 import PasswordHasher

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(identity, "_hasher", cheap)
    monkeypatch.setattr(identity, "_DUMMY_HASH", cheap.hash("dummy"))


def _kinds(catalog) -> list[tuple[str, str, dict]]:
    return [(e["kind"], e["actor"], e["data"]) for e in audit.events(catalog)]


def test_every_identity_event_lands_in_the_chain_and_no_secret_does(catalog):
    add_person(catalog, "mere", "A", "member", owner="kaitiaki")
    otp = identity.reset_password(catalog, "mere", by="owner:kaitiaki")  # creates the account
    who = identity.authenticate(catalog, "mere", otp, client="10.0.0.7")
    identity.change_password(catalog, who.person_id, otp, "long enough password")
    raw = identity.start_session(catalog, who.person_id)
    identity.end_session(catalog, raw, client="10.0.0.7")
    identity.end_session(catalog, raw)  # already ended: no second sign-out
    tid, token = identity.create_token(catalog, "mere", "scripts", ["read"], days=5)
    identity.revoke_token(catalog, tid, person_id=who.person_id)
    assert identity.set_disabled(catalog, "mere", True, by="aroha")
    assert not identity.set_disabled(catalog, "mere", True, by="aroha")  # no change, no event
    for name in ("mere", "Mere ", "nobody"):
        with pytest.raises(identity.SignInRefused):
            identity.authenticate(catalog, name, SECRET, client="203.0.113.9")
    add_person(catalog, "hine", "A", "member", owner="kaitiaki")
    with pytest.raises(HearthError, match="has no account"):
        identity.set_disabled(catalog, "hine", True)

    ev = [(k, a, d) for k, a, d in _kinds(catalog) if k != "person"]
    assert [(k, d.get("action")) for k, _a, d in ev] == [
        ("account", "create"), ("sign_in", None), ("account", "password_change"), ("sign_out", None),
        ("api_token", "create"), ("api_token", "revoke"), ("account", "disable"),
        ("sign_in_refused", None), ("sign_in_refused", None), ("sign_in_refused", None)]
    actors = [a for _k, a, _d in ev]
    assert actors[:7] == ["owner:kaitiaki", "mere", "mere", "mere", "mere", "mere", "aroha"]
    # Every event of mere names her and her communities, so A's stewards see it on the web audit page.
    assert all(d["person"] == "mere" and d["communities"] == ["A"] for _k, _a, d in ev[:8])
    assert ev[1][2]["client"] == "10.0.0.7" and ev[3][2]["client"] == "10.0.0.7"
    assert ev[4][2]["scopes"] == ["read"] and ev[4][2]["token"] == tid
    refused = [d for k, _a, d in ev if k == "sign_in_refused"]
    assert [d["name"] for d in refused] == ["mere", "Mere ", "nobody"]  # as typed
    assert [d["reason"] for d in refused] == ["account disabled", "no account of that name", "no account of that name"]
    assert all(d["client"] == "203.0.113.9" for d in refused) and "person" not in refused[2]
    assert all(a == "anonymous" for k, a, _d in ev if k == "sign_in_refused")
    # Neither the typed password, the one-time password, the new password nor the token is anywhere in the log.
    with catalog.session() as s:
        stored = json.dumps([(e.actor, e.data) for e in s.scalars(select(AuditEvent))])
    for secret in (SECRET, otp, "long enough password", token, token[3:]):
        assert secret not in stored
    assert audit.verify(catalog).ok


def test_wrong_passwords_count_towards_the_lock_and_each_is_audited(catalog):
    add_person(catalog, "rangi", "A", "member", owner="kaitiaki")
    identity.reset_password(catalog, "rangi")
    for _ in range(identity.FREE_FAILURES):
        with pytest.raises(identity.SignInRefused):
            identity.authenticate(catalog, "rangi", SECRET, client="198.51.100.2")
    refused = audit.events(catalog, "sign_in_refused")
    assert [e["data"]["failures"] for e in refused] == list(range(1, identity.FREE_FAILURES + 1))
    assert refused[-1]["data"]["reason"] == "wrong password (account now locked)"
    with pytest.raises(identity.SignInRefused):  # locked: refused before the password is looked at
        identity.authenticate(catalog, "rangi", SECRET)
    assert audit.events(catalog, "sign_in_refused")[-1]["data"]["reason"] == "account locked"
    assert SECRET not in json.dumps(audit.events(catalog))
