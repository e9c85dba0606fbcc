"""Table-driven inheritance rules: which uses a model's inherited restrictions and status allow."""

from __future__ import annotations

import pytest

from hearthkit.errors import HearthError
from hearthkit.lineage.guard import check_use

CASES = [
    # restrictions, status, purpose, requester, memberships, allowed?
    ([], "active", "commercial", "x", set(), True),
    (["tk:non_commercial"], "active", "commercial", "x", set(), False),
    (["bc:non_commercial"], "active", "commercial", "x", set(), False),
    (["bc:research"], "active", "commercial", "x", set(), False),
    (["tk:non_commercial"], "active", "research", "x", set(), True),
    (["tk:outreach"], "active", "research", "x", set(), False),
    (["bc:outreach"], "active", "education_outreach", "x", set(), True),
    (["tk:women_restricted", "protocol:women"], "active", "community_use", "mere", {"women"}, True),
    (["tk:women_restricted", "protocol:women"], "active", "community_use", "rangi", set(), False),
    (["tk:women_restricted"], "active", "community_use", "mere", {"women"}, False),  # no protocol recorded
    (["tk:secret_sacred", "protocol:keepers"], "active", "community_use", "kui", {"keepers"}, True),
    (["tk:attribution"], "active", "commercial", "x", set(), True),
    ([], "needs-retrain", "research", "x", set(), False),
    ([], "revoked", "research", "x", set(), False),
    ([], "superseded", "research", "x", set(), False),
]


@pytest.mark.parametrize(("restrictions", "status", "purpose", "requester", "member_of", "allowed"), CASES)
def test_inherited_restrictions(restrictions, status, purpose, requester, member_of, allowed) -> None:
    def call():
        check_use("m", status, restrictions, purpose, requester, lambda who: member_of)

    if allowed:
        call()
    else:
        with pytest.raises(HearthError):
            call()
