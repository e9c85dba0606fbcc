"""Local Contexts TK/BC labels and notices, their enforcement category, and the purposes (VISION §4)."""

from __future__ import annotations

from enum import StrEnum


class Purpose(StrEnum):
    """What a trained model is for; consent names the purposes it allows."""

    community_use = "community_use"
    language_revitalization = "language_revitalization"
    education_outreach = "education_outreach"
    research = "research"
    public_release = "public_release"
    commercial = "commercial"


# How each label is enforced. Keys are spelled as the Local Contexts Hub's `label_type`, namespaced.
STEWARD_ONLY = "steward_only"  # never trained on unless a steward approves that run; model restricted
PROTOCOL = "protocol"  # only requesters inside the matching protocol; model inherits
SEASONAL = "seasonal"  # only inside the recorded season window
NEEDS_APPROVAL = "needs_approval"  # run needs steward approval
UNVERIFIED = "unverified"  # excluded unless a steward overrides
NON_COMMERCIAL = "non_commercial"  # never in a commercial run; model inherits non-commercial
OUTREACH = "outreach"  # only for education_outreach
COMMERCIAL_AGREEMENT = "commercial_agreement"  # commercial only with a recorded community agreement
ATTRIBUTION = "attribution"  # carried into the model card's attribution
MULTI_COMMUNITY = "multi_community"  # approval needed from every listed community
INFORMATIONAL = "informational"
NOTICE = "notice"  # shown on the model card

LABELS: dict[str, str] = {
    "tk:secret_sacred": STEWARD_ONLY,
    "tk:women_restricted": STEWARD_ONLY,
    "tk:men_restricted": STEWARD_ONLY,
    "tk:women_general": PROTOCOL,
    "tk:men_general": PROTOCOL,
    "tk:clan": PROTOCOL,
    "tk:family": PROTOCOL,
    "tk:community_use_only": PROTOCOL,
    "tk:seasonal": SEASONAL,
    "tk:culturally_sensitive": NEEDS_APPROVAL,
    "tk:non_verified": UNVERIFIED,
    "bc:consent_non_verified": UNVERIFIED,
    "tk:verified": INFORMATIONAL,
    "bc:consent_verified": INFORMATIONAL,
    "tk:non_commercial": NON_COMMERCIAL,
    "bc:non_commercial": NON_COMMERCIAL,
    "bc:research": NON_COMMERCIAL,
    "tk:outreach": OUTREACH,
    "bc:outreach": OUTREACH,
    "tk:commercial": COMMERCIAL_AGREEMENT,
    "bc:commercialization": COMMERCIAL_AGREEMENT,
    "tk:open_to_collaboration": INFORMATIONAL,
    "bc:collaboration": INFORMATIONAL,
    "tk:attribution": ATTRIBUTION,
    "tk:creative": ATTRIBUTION,
    "tk:community_voice": ATTRIBUTION,
    "bc:provenance": ATTRIBUTION,
    "bc:clan": ATTRIBUTION,
    "tk:multiple_community": MULTI_COMMUNITY,
    "bc:multiple_community": MULTI_COMMUNITY,
    "notice:tk": NOTICE,
    "notice:bc": NOTICE,
    "notice:attribution_incomplete": NOTICE,
    "notice:open_to_collaborate": NOTICE,
}

# Declaration kinds a steward records (table `declarations`): that no identifiable person is in a recording.
NO_PERSON = "no_identifiable_person"

# Labels whose restriction a model trained on the item inherits (VISION §4 "Lineage and inheritance").
INHERITED = {STEWARD_ONLY, PROTOCOL, NON_COMMERCIAL, OUTREACH, SEASONAL, NEEDS_APPROVAL}


def category(key: str) -> str:
    """The enforcement category of label KEY, or an error naming the unknown key."""
    try:
        return LABELS[key]
    except KeyError:
        from hearthkit.errors import HearthError

        raise HearthError(
            f"unknown label {key!r}: use a Local Contexts key such as tk:non_commercial or bc:research"
        ) from None
