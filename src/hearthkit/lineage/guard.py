"""Refuse uses of a model that its status or inherited restrictions forbid (export, serving, transcription)."""

from __future__ import annotations

from collections.abc import Callable

from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v


def check_use(name: str, status: str, restrictions: list[str], purpose: str, requester: str | None = None,
              memberships: Callable[[str], set[str]] | None = None, successor: str | None = None) -> None:
    """Raise a one-line HearthError when model NAME may not be used for PURPOSE by REQUESTER.

    MEMBERSHIPS gives the protocols a requester belongs to; a model restricted to a protocol (`protocol:NAME`, from
    steward-approved protocol items) may be used only by its members, and a protocol label with no recorded
    protocol is refused to everyone (deny by default).
    """
    if status in ("revoked", "superseded"):
        hint = f"; use its successor {successor}" if successor else ""
        # Revoked by a retrain after a withdrawal, or outright by a steward (lineage/revoke.py): never used again.
        raise HearthError(f"model {name} is {status} and may not be used{hint}")
    if status == "needs-retrain":
        raise HearthError(f"model {name} learned from withdrawn data and needs retraining: run `hearth retrain {name}`")
    mine = memberships(requester) if (memberships and requester) else set()
    protocols = sorted(r.split(":", 1)[1] for r in restrictions if r.startswith("protocol:"))
    outside = [p for p in protocols if p not in mine]
    if outside:
        who = requester or "an unnamed requester"
        raise HearthError(f"model {name} is restricted to protocol {outside[0]}; {who} is not a member of it")
    for key in sorted(restrictions):
        cat = v.LABELS.get(key)
        if cat == v.NON_COMMERCIAL and purpose == v.Purpose.commercial:
            raise HearthError(f"model {name} inherits {key} from its training data: no commercial use")
        if cat == v.OUTREACH and purpose != v.Purpose.education_outreach:
            raise HearthError(f"model {name} inherits {key}: only for purpose education_outreach")
        if cat in (v.STEWARD_ONLY, v.PROTOCOL) and not protocols:
            # Deny by default: a protocol label with no protocol recorded leaves no one known to be inside it.
            who = requester or "an unnamed requester"
            raise HearthError(f"model {name} inherits {key}; no protocol is recorded that {who} belongs to")
