"""Refuse uses of a model that its status or inherited restrictions forbid (export, serving, transcription)."""

from __future__ import annotations

from collections.abc import Callable

from hearthkit.errors import HearthError
from hearthkit.governance import vocabulary as v


def check_use(name: str, status: str, restrictions: list[str], purpose: str, requester: str | None = None,
              in_protocol: Callable[[str, str], bool] | None = None, successor: str | None = None) -> None:
    """Raise a one-line HearthError when model NAME may not be used for PURPOSE by REQUESTER."""
    if status in ("revoked", "superseded"):
        hint = f"; use its successor {successor}" if successor else ""
        raise HearthError(f"model {name} is {status} after a consent withdrawal and may not be used{hint}")
    if status == "needs-retrain":
        raise HearthError(f"model {name} learned from withdrawn data and needs retraining: run `hearth retrain {name}`")
    for key in sorted(restrictions):
        cat = v.LABELS.get(key)
        if cat == v.NON_COMMERCIAL and purpose == v.Purpose.commercial:
            raise HearthError(f"model {name} inherits {key} from its training data: no commercial use")
        if cat == v.OUTREACH and purpose != v.Purpose.education_outreach:
            raise HearthError(f"model {name} inherits {key}: only for purpose education_outreach")
        if cat in (v.STEWARD_ONLY, v.PROTOCOL):
            # Deny by default: only a requester inside the protocol may use a model restricted to it.
            if requester is None or in_protocol is None or not in_protocol(requester, key):
                who = requester or "an unnamed requester"
                raise HearthError(f"model {name} is restricted to the {key} protocol; {who} is not inside it")
