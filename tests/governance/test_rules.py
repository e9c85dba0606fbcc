"""One test per policy rule (VISION §4): each fails if its rule is removed from the engine."""

from __future__ import annotations

import pytest
from builder import EVERY, NONCOMMERCIAL

from hearthkit.errors import HearthError


def test_collective_consent_missing_excludes_everything(b):
    c = b.collection(consent=False)
    b.item(c, "a")
    assert b.verdict("a")[0] == "collective_consent"


@pytest.mark.parametrize("expires,withdrawn,word", [("2026-03-01", None, "expired"), (None, "2026-02-01", "withdrawn")])
def test_collective_consent_expired_or_withdrawn(b, expires, withdrawn, word):
    c = b.collection(consent=False)
    b.consent(c, "collective", "A", NONCOMMERCIAL, expires=expires, withdrawn=withdrawn)
    b.item(c, "a")
    rule, reason = b.verdict("a")
    assert rule == "collective_consent" and word in reason
    assert b.verdict("a", as_of="2026-01-15") == (None, None)  # before expiry / withdrawal it held


def test_collective_consent_names_purposes(b):
    c = b.collection(purposes=["research"])
    b.item(c, "a")
    assert b.verdict("a", purpose="research") == (None, None)
    rule, reason = b.verdict("a", purpose="public_release")
    assert rule == "collective_consent" and "research" in reason and "public_release" in reason


def test_commercial_is_never_implied(b):
    c = b.collection(purposes=NONCOMMERCIAL)  # every purpose but commercial
    b.consent(c, "individual", "mere", EVERY)
    b.item(c, "a", speaker="mere")
    assert b.verdict("a", purpose="commercial")[0] == "collective_consent"


def test_individual_consent_needed_for_an_item_with_a_person(b):
    c = b.collection()
    b.item(c, "a", speaker="mere")
    b.item(c, "b")  # nobody in it: collective consent is enough
    assert b.verdict("a")[0] == "individual_consent"
    assert b.verdict("b") == (None, None)


def test_individual_consent_withdrawn_expired_and_purpose(b):
    c = b.collection()
    b.consent(c, "individual", "mere", ["research"], withdrawn="2026-05-01")
    b.consent(c, "individual", "hemi", ["research"], expires="2026-05-01")
    b.consent(c, "individual", "kiri", ["community_use"])
    b.item(c, "m", speaker="mere")
    b.item(c, "h", speaker="hemi")
    b.item(c, "k", speaker="kiri")
    assert b.verdict("m") == ("individual_consent", "consent of speaker mere is not in force (withdrawn on 2026-05-01)")
    assert "expired on 2026-05-01" in b.verdict("h")[1]
    assert b.verdict("k") == ("purpose_not_consented", "speaker kiri consented to community_use, not research")
    assert b.verdict("m", as_of="2026-04-30") == (None, None)


def test_consent_not_yet_given_does_not_count(b):
    c = b.collection()
    b.consent(c, "individual", "mere", ["research"], given="2026-07-01")
    b.item(c, "a", speaker="mere")
    assert "given only on 2026-07-01" in b.verdict("a", as_of="2026-06-01")[1]


def test_item_embargo(b):
    c = b.collection()
    b.item(c, "a", embargo="2026-09-01")
    assert b.verdict("a", as_of="2026-08-31") == ("embargo", "under embargo until 2026-09-01")
    assert b.verdict("a", as_of="2026-09-01") == (None, None)


def test_collection_embargo(b):
    c = b.collection(embargo="2027-01-01")
    b.item(c, "a")
    assert b.verdict("a")[0] == "embargo"


@pytest.mark.parametrize("window,inside,outside", [("05-01..08-31", "2026-06-01", "2026-09-01"),
                                                   ("11-01..02-28", "2026-01-15", "2026-06-01")])
def test_seasonal_label_only_inside_its_window(b, window, inside, outside):
    c = b.collection()
    i = b.item(c, "a")
    start, end = window.split("..")
    b.label("tk:seasonal", item=i, season_from=start, season_to=end)
    assert b.verdict("a", as_of=inside) == (None, None)
    rule, reason = b.verdict("a", as_of=outside)
    assert rule == "tk:seasonal" and window in reason


def test_seasonal_label_without_window_is_denied(b):
    c = b.collection()
    b.label("tk:seasonal", item=b.item(c, "a"))
    assert b.verdict("a")[0] == "tk:seasonal"


def test_protocol_sharing_all_needs_every_protocol(b):
    c = b.collection()
    i = b.item(c, "a", sharing="all")
    b.protocol("women", members=("mere", "aroha"), items=(i,))
    b.protocol("weavers", members=("mere",), items=(i,))
    assert b.verdict("a", requester="mere") == (None, None)
    rule, reason = b.verdict("a", requester="aroha")
    assert rule == "protocol" and "sharing all" in reason
    assert b.verdict("a", requester="stranger")[0] == "protocol"


def test_protocol_sharing_any_needs_one_protocol(b):
    c = b.collection()
    i = b.item(c, "a", sharing="any")
    b.protocol("women", members=("mere", "aroha"), items=(i,))
    b.protocol("weavers", members=("mere",), items=(i,))
    assert b.verdict("a", requester="aroha") == (None, None)
    rule, reason = b.verdict("a", requester="stranger")
    assert rule == "protocol" and "sharing any" in reason


def test_protocol_label_with_protocol_needs_membership_and_restricts_model(b):
    c = b.collection()
    pid = b.protocol("women", members=("mere",))
    b.label("tk:women_general", item=b.item(c, "a"), protocol_id=pid)
    rule, reason = b.verdict("a", requester="hemi")
    assert rule == "tk:women_general" and "protocol 'women'" in reason
    man = b.manifest(requester="mere")
    assert [e["external_id"] for e in man.included] == ["a"]
    assert {"tk:women_general", "protocol:women"} <= set(man.restrictions)


def test_protocol_label_without_any_protocol_is_denied(b):
    c = b.collection()
    b.label("tk:family", item=b.item(c, "a"))
    rule, reason = b.verdict("a")
    assert rule == "tk:family" and "no protocol" in reason


def test_protocol_label_uses_the_items_protocols(b):
    c = b.collection()
    i = b.item(c, "a")
    b.protocol("clan-x", members=("mere",), items=(i,))
    b.label("tk:clan", item=i)
    assert b.verdict("a", requester="mere") == (None, None)
    assert b.verdict("a", requester="hemi")[0] == "protocol"


@pytest.mark.parametrize("key", ["tk:secret_sacred", "tk:women_restricted", "tk:men_restricted"])
def test_steward_only_labels_held_until_approved_then_model_restricted(b, key):
    c = b.collection()
    i = b.item(c, "a")
    pid = b.protocol("inner", members=("rangi",), items=(i,))
    b.label(key, item=i, protocol_id=pid)
    man = b.manifest()
    assert man.excluded[0]["rule"] == key and man.excluded[0]["needs_approval"] == ["A"]
    assert man.approvals_needed == ["A"]
    approved = b.manifest(approved=("A",))
    assert [e["external_id"] for e in approved.included] == ["a"]
    assert {key, "protocol:inner"} <= set(approved.restrictions)


def test_culturally_sensitive_needs_approval(b):
    c = b.collection()
    b.label("tk:culturally_sensitive", item=b.item(c, "a"), community="A")
    assert b.verdict("a")[0] == "tk:culturally_sensitive"
    assert b.verdict("a", approved=("B",))[0] == "tk:culturally_sensitive"  # another community cannot approve
    assert b.verdict("a", approved=("A",)) == (None, None)


@pytest.mark.parametrize("key", ["tk:non_verified", "bc:consent_non_verified"])
def test_non_verified_excluded_unless_steward_overrides(b, key):
    c = b.collection()
    b.label(key, item=b.item(c, "a"))
    rule, reason = b.verdict("a")
    assert rule == key and "overrides" in reason
    assert b.verdict("a", approved=("A",)) == (None, None)


@pytest.mark.parametrize("key", ["tk:multiple_community", "bc:multiple_community"])
def test_multiple_community_needs_every_community(b, key):
    c = b.collection()
    b.label(key, item=b.item(c, "a"), community="A", communities=["B", "C"])
    man = b.manifest()
    assert man.excluded[0]["needs_approval"] == ["A", "B", "C"]
    assert b.verdict("a", approved=("A", "B"))[0] == key
    assert b.manifest(approved=("A", "B")).excluded[0]["needs_approval"] == ["C"]
    assert b.verdict("a", approved=("A", "B", "C")) == (None, None)


@pytest.mark.parametrize("key", ["tk:non_commercial", "bc:non_commercial", "bc:research"])
def test_non_commercial_labels_never_in_commercial_runs_and_inherited(b, key):
    c = b.collection(purposes=EVERY)
    b.label(key, item=b.item(c, "a"))
    assert b.verdict("a", purpose="commercial")[0] == key
    man = b.manifest(purpose="research")
    assert len(man.included) == 1 and key in man.restrictions


@pytest.mark.parametrize("key", ["tk:outreach", "bc:outreach"])
def test_outreach_only_for_education_outreach(b, key):
    c = b.collection()
    b.label(key, item=b.item(c, "a"))
    assert b.verdict("a", purpose="research")[0] == key
    assert b.verdict("a", purpose="education_outreach") == (None, None)


@pytest.mark.parametrize("key", ["tk:commercial", "bc:commercialization"])
def test_commercial_labels_need_a_recorded_agreement(b, key):
    c = b.collection(purposes=EVERY)
    b.label(key, item=b.item(c, "a"))
    b.label(key, item=b.item(c, "b"), agreement="agreement 2026-04 signed by the council")
    assert b.verdict("a", purpose="commercial")[0] == key
    assert b.verdict("b", purpose="commercial") == (None, None)
    assert b.verdict("a", purpose="research") == (None, None)


def test_unknown_label_is_denied(b):
    c = b.collection()
    b.label("tk:made_up", item=b.item(c, "a"))
    rule, reason = b.verdict("a")
    assert rule == "tk:made_up" and "unknown label" in reason


def test_collection_level_label_applies_to_every_item(b):
    c = b.collection(purposes=EVERY)
    b.item(c, "a")
    b.item(c, "b")
    b.label("bc:non_commercial", coll=c)
    man = b.manifest(purpose="commercial")
    assert [e["rule"] for e in man.excluded] == ["bc:non_commercial", "bc:non_commercial"]


def test_hard_rule_wins_over_approval(b):
    """An item no approval can admit is not held for approval: stewards are not asked in vain."""
    c = b.collection()
    b.label("tk:secret_sacred", item=b.item(c, "a", speaker="nobody"))
    man = b.manifest()
    assert man.excluded[0]["rule"] == "individual_consent" and "needs_approval" not in man.excluded[0]
    assert man.approvals_needed == []


def test_provenance_labels_carry_attribution_and_notices(b):
    c = b.collection(citation="Korero archive, 2026")
    i = b.item(c, "a")
    b.label("tk:attribution", item=i, text="Recorded with Ngāti A elders")
    b.label("notice:attribution_incomplete", item=i)
    man = b.manifest()
    assert "A (tk:attribution): Recorded with Ngāti A elders" in man.attribution
    assert "Korero archive, 2026" in man.attribution
    assert man.notices == ["notice:attribution_incomplete"]


def test_unknown_purpose_and_collection_are_user_errors(b):
    b.collection()
    with pytest.raises(HearthError, match="purpose 'selling'"):
        b.manifest(purpose="selling")
    with pytest.raises(HearthError, match="collection 'nope'"):
        b.manifest(collections=("nope",))


def test_identical_requests_give_byte_identical_manifests(b):
    c = b.collection(citation="cite")
    for n in range(20):
        i = b.item(c, f"i{n:02d}", speaker="mere" if n % 3 else None)
        if n % 4 == 0:
            b.label("tk:non_commercial", item=i)
        if n % 5 == 0:
            b.label("tk:secret_sacred", item=i)
    b.consent(c, "individual", "mere", ["research"])
    first, second = b.manifest().to_json(), b.manifest().to_json()
    assert first == second and len(b.manifest().included) > 0
    b.item(c, "zz")  # a catalog change changes the bytes
    assert b.manifest().to_json() != first
