"""Requests and approvals: pending/approved/denied, bound to the manifest hash; training refuses otherwise."""

from __future__ import annotations

from datetime import date

import pytest

from hearthkit.engine.config import RunConfig
from hearthkit.errors import HearthError
from hearthkit.governance import requests as rq
from hearthkit.launch.plan import governed_manifest


def _setup(b):
    c = b.collection()
    b.item(c, "plain")
    b.label("tk:secret_sacred", item=b.item(c, "sacred"), community="A")
    b.label("tk:multiple_community", item=b.item(c, "shared"), community="A", communities=["B"])
    b.person("aroha", "A", "steward")
    b.person("ben", "B", "steward")
    b.person("mere", "A", "member")
    return c


def _cfg(rid: int | None = None, **request) -> RunConfig:
    req = {"purpose": "research", "requester": "rangi", "collections": ["korero"], "id": rid, **request}
    return RunConfig(name="r1", recipe="asr", request=req)


def _request(catalog):
    # Made today, as `hearth request` makes it: a request with a past as_of is never approved (test_backdating).
    return rq.create_request(catalog, "research", "rangi", ["korero"], "asr", date.today().isoformat())


def test_request_pending_until_every_community_approves(b, catalog):
    _setup(b)
    req, now = _request(catalog)
    assert req.status == "pending" and req.needs == ("A", "B")
    assert [e["external_id"] for e in now.included] == ["plain"]
    held = {e["external_id"]: e for e in now.excluded}
    assert held["sacred"]["needs_approval"] == ["A"] and "held for approval" in held["sacred"]["reason"]
    with pytest.raises(HearthError, match="awaits approval by the stewards of A, B"):
        governed_manifest(catalog, _cfg(req.id))
    assert rq.decide(catalog, req.id, "aroha", "approve").status == "pending"
    with pytest.raises(HearthError, match="awaits approval by the stewards of B"):
        governed_manifest(catalog, _cfg(req.id))
    assert rq.decide(catalog, req.id, "ben", "approve").status == "approved"
    man = governed_manifest(catalog, _cfg(req.id))
    assert [e["external_id"] for e in man.included] == ["plain", "sacred", "shared"]
    assert man.hash == req.manifest_hash and "tk:secret_sacred" in man.restrictions


def test_only_a_steward_of_a_concerned_community_decides(b, catalog):
    _setup(b)
    req, _ = _request(catalog)
    with pytest.raises(HearthError, match="review the request's manifest"):
        rq.decide(catalog, req.id, "aroha", "approve", seen_hash="0" * 64)
    with pytest.raises(HearthError, match="mere is not a steward"):
        rq.decide(catalog, req.id, "mere", "approve")
    with pytest.raises(HearthError, match="needs no approval from C"):
        rq.decide(catalog, req.id, "aroha", "approve", community="C")
    rq.decide(catalog, req.id, "aroha", "approve")
    with pytest.raises(HearthError, match="aroha is not a steward of a community whose decision"):
        rq.decide(catalog, req.id, "aroha", "approve")  # already decided for A


def test_denied_request_refuses_training(b, catalog):
    _setup(b)
    req, _ = _request(catalog)
    assert rq.decide(catalog, req.id, "ben", "deny", note="not ours to share").status == "denied"
    with pytest.raises(HearthError, match="was denied by ben of B"):
        governed_manifest(catalog, _cfg(req.id))
    with pytest.raises(HearthError, match="already denied"):
        rq.decide(catalog, req.id, "aroha", "approve")


def test_manifest_changed_since_approval_refuses_training(b, catalog):
    c = _setup(b)
    req, _ = _request(catalog)
    rq.decide(catalog, req.id, "aroha", "approve")
    rq.decide(catalog, req.id, "ben", "approve")
    b.item(c, "added-later")
    with pytest.raises(HearthError, match="changed since approval"):
        governed_manifest(catalog, _cfg(req.id))


def test_approval_is_bound_to_the_requested_manifest(b, catalog):
    c = _setup(b)
    req, _ = _request(catalog)
    b.label("tk:non_commercial", item=b.item(c, "new"))
    with pytest.raises(HearthError, match="catalog changed since it was made"):
        rq.decide(catalog, req.id, "aroha", "approve")


def test_request_without_held_items_needs_no_approval(b, catalog):
    c = b.collection()
    b.item(c, "plain")
    req, _ = _request(catalog)
    assert req.status == "not_required" and req.needs == ()
    assert governed_manifest(catalog, _cfg(req.id)).hash == req.manifest_hash
    with pytest.raises(HearthError, match="needs no approval"):
        rq.decide(catalog, req.id, "aroha", "approve")


def test_config_must_match_the_request(b, catalog):
    _setup(b)
    req, _ = _request(catalog)
    with pytest.raises(HearthError, match="config's purpose 'community_use' differs from request"):
        governed_manifest(catalog, _cfg(req.id, purpose="community_use"))
    with pytest.raises(HearthError, match="request 99 does not exist"):
        governed_manifest(catalog, _cfg(99))


def test_without_request_id_held_items_are_just_excluded(b, catalog):
    _setup(b)
    man = governed_manifest(catalog, _cfg(None))
    assert [e["external_id"] for e in man.included] == ["plain"]
    assert man.approvals_needed == ["A", "B"]
