"""Table-driven: every Local Contexts label key, written out from VISION §4, against the engine.

Scenario: collective and individual consent for every purpose, the requester in no protocol, no protocol on the
item or label, no season window, no agreement. Columns: outcome for purpose research / commercial /
education_outreach ("in" or "out"), outcome for research once the label's community approved the run, and what
a model trained on the item carries.
"""

from __future__ import annotations

import pytest
from builder import EVERY

from hearthkit.governance.vocabulary import LABELS

R, A, N = "restriction", "attribution", "notice"
TABLE: dict[str, tuple[str, str, str, str, str | None]] = {
    # protocol (who may access)
    "tk:secret_sacred": ("out", "out", "out", "in", R),
    "tk:women_restricted": ("out", "out", "out", "in", R),
    "tk:men_restricted": ("out", "out", "out", "in", R),
    "tk:women_general": ("out", "out", "out", "out", R),
    "tk:men_general": ("out", "out", "out", "out", R),
    "tk:clan": ("out", "out", "out", "out", R),
    "tk:family": ("out", "out", "out", "out", R),
    "tk:community_use_only": ("out", "out", "out", "out", R),
    "tk:seasonal": ("out", "out", "out", "out", R),
    "tk:culturally_sensitive": ("out", "out", "out", "in", R),
    "tk:non_verified": ("out", "out", "out", "in", None),
    "bc:consent_non_verified": ("out", "out", "out", "in", None),
    "tk:verified": ("in", "in", "in", "in", None),
    "bc:consent_verified": ("in", "in", "in", "in", None),
    # permission (for what)
    "tk:non_commercial": ("in", "out", "in", "in", R),
    "bc:non_commercial": ("in", "out", "in", "in", R),
    "bc:research": ("in", "out", "in", "in", R),
    "tk:outreach": ("out", "out", "in", "out", R),
    "bc:outreach": ("out", "out", "in", "out", R),
    "tk:commercial": ("in", "out", "in", "in", None),
    "bc:commercialization": ("in", "out", "in", "in", None),
    "tk:open_to_collaboration": ("in", "in", "in", "in", None),
    "bc:collaboration": ("in", "in", "in", "in", None),
    # provenance (whose)
    "tk:attribution": ("in", "in", "in", "in", A),
    "tk:creative": ("in", "in", "in", "in", A),
    "tk:community_voice": ("in", "in", "in", "in", A),
    "bc:provenance": ("in", "in", "in", "in", A),
    "bc:clan": ("in", "in", "in", "in", A),
    "tk:multiple_community": ("out", "out", "out", "in", None),
    "bc:multiple_community": ("out", "out", "out", "in", None),
    # notices
    "notice:tk": ("in", "in", "in", "in", N),
    "notice:bc": ("in", "in", "in", "in", N),
    "notice:attribution_incomplete": ("in", "in", "in", "in", N),
    "notice:open_to_collaborate": ("in", "in", "in", "in", N),
}


def test_table_covers_every_label_key():
    assert set(TABLE) == set(LABELS)


@pytest.mark.parametrize("key", sorted(TABLE))
def test_label_enforcement(b, key):
    research, commercial, outreach, approved, carries = TABLE[key]
    c = b.collection(purposes=EVERY)
    b.consent(c, "individual", "mere", EVERY)
    b.label(key, item=b.item(c, "a", speaker="mere"), text="our words")

    def outcome(purpose, approvals=()):
        rule, reason = b.verdict("a", purpose=purpose, approved=approvals)
        if rule is not None:
            assert rule == key and reason.startswith(key + ":"), (rule, reason)  # the reason names the label
        return "out" if rule else "in"

    assert outcome("research") == research
    assert outcome("commercial") == commercial
    assert outcome("education_outreach") == outreach
    assert outcome("research", ("A",)) == approved
    if "in" in (research, approved):
        man = b.manifest(purpose="research", approved=("A",) if research == "out" else ())
        assert (key in man.restrictions) == (carries == R)
        assert any(key in a for a in man.attribution) == (carries == A)
        assert (key in man.notices) == (carries == N)
