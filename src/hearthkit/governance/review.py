"""What a steward reviews before deciding a request: the manifest summarised, and the items held for them."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection
from hearthkit.errors import HearthError
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import manifest_in_session
from hearthkit.governance.requests import StoredRequest, _load


@dataclass
class Review:
    """A request's manifest as the stewards approve it, summarised; held items only for the viewer's communities."""

    request: StoredRequest
    manifest_hash: str  # the hash recomputed now (once every needed community approves)
    stale: bool  # the catalog changed since the request: its stored hash no longer matches
    included: int
    included_seconds: float
    excluded: dict[str, int]  # rule -> count, before any approval
    per_speaker: dict[str, int]  # included items per speaker, once approved ("–" = none recorded)
    per_dialect: dict[str, int]
    restrictions: list[str]  # what a model trained on it would inherit
    attribution: list[str]
    notices: list[str]
    held: list[dict] = field(default_factory=list)  # item_id, collection, external_id, rule, reason, needs_approval
    held_elsewhere: int = 0  # held items of communities the viewer does not steward: counted, never listed

    def to_dict(self) -> dict:
        """Plain data for the JSON twin."""
        doc = asdict(self)
        doc["request"] = asdict(self.request)
        return doc


def review(catalog: Catalog, request_id: int, stewarded: set[str]) -> Review:
    """Summarise request REQUEST_ID's manifest; list the held items of the communities in STEWARDED."""
    with catalog.session() as s:
        _, req = _load(s, request_id)
        missing = [c for c in req.collections if s.scalar(select(Collection.id).where(Collection.name == c)) is None]
        if missing:
            raise HearthError(f"request {request_id} names collection {missing[0]!r}, which is no longer in the "
                              "catalog; the request cannot be reviewed or approved: make a new one")
        owners = dict(s.execute(select(Collection.name, Collection.community)
                                .where(Collection.name.in_(req.collections))).all())
        now = manifest_in_session(s, Request(req.purpose, req.requester, req.collections, req.as_of, (), req.id))
        full = manifest_in_session(s, Request(req.purpose, req.requester, req.collections, req.as_of,
                                              tuple(req.needs), req.id))
    seconds = sum(i.get("duration_s") or 0.0 for i in full.included)
    speakers = Counter(i.get("speaker") or "–" for i in full.included)
    dialects = Counter(i.get("dialect") or "–" for i in full.included)
    held, elsewhere = [], 0
    for e in now.excluded:
        if "needs_approval" not in e:
            continue
        # A steward sees the held items of their own communities' collections only (no leak across communities).
        if owners.get(e["collection"]) in stewarded:
            held.append({k: e[k] for k in ("item_id", "collection", "external_id", "rule", "reason",
                                           "needs_approval")})
        else:
            elsewhere += 1
    return Review(req, full.hash, full.hash != req.manifest_hash, len(full.included), round(seconds, 1),
                  now.excluded_counts(), dict(sorted(speakers.items())), dict(sorted(dialects.items())),
                  full.restrictions, full.attribution, full.notices, held, elsewhere)
