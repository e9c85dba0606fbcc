"""The manifest: what a run may read (items + hashes) and what it may not (items + reasons)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from hearthkit.errors import HearthError

if TYPE_CHECKING:
    from hearthkit.store.vault import Store


@dataclass(frozen=True)
class Request:
    """A training request: who asks, for what purpose, over which collections."""

    purpose: str
    requester: str
    collections: tuple[str, ...]
    as_of: str  # ISO date at which embargo, seasons and expiry are evaluated
    approved: tuple[str, ...] = ()  # communities whose stewards approved this request (lifts held items)
    request_id: int | None = None  # the stored request (`hearth request`) this manifest answers, if any


@dataclass
class Manifest:
    """Included items with content hashes; excluded items with one readable reason each."""

    request: Request
    included: list[dict] = field(default_factory=list)
    excluded: list[dict] = field(default_factory=list)
    restrictions: list[str] = field(default_factory=list)  # inherited by any model trained on it
    attribution: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    approvals_needed: list[str] = field(default_factory=list)  # communities whose approval would add held items

    def to_json(self) -> str:
        """Canonical JSON: identical requests over an unchanged catalog give identical bytes."""
        # No asdict() deep copy and no indent: both force slow paths, and a manifest may hold a million items.
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["request"] = asdict(self.request)
        return json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n"

    # Read from a file whose entries of withdrawn items lost their words (governance/sealed_manifest.py, verified on
    # read): the sha256 it was planned with, which the run, model and audit record, and those items' ids.
    planned_hash: ClassVar[str | None] = None
    erased: ClassVar[frozenset[int]] = frozenset()

    @property
    def hash(self) -> str:
        """The sha256 of the manifest as planned (the words erased by withdrawal are not there to hash)."""
        return self.planned_hash or hashlib.sha256(self.to_json().encode("utf-8")).hexdigest()

    def use(self) -> tuple:
        """What a run may do with this manifest, apart from the date it was judged at: the items it reads (id and
        content hash) and the restrictions its model inherits. Two manifests of one request compare equal here
        when the data use they permit is the same."""
        return (tuple((e["item_id"], e["content_hash"]) for e in self.included), tuple(self.restrictions))

    def excluded_counts(self) -> dict[str, int]:
        """Number of excluded items per rule."""
        counts: dict[str, int] = {}
        for e in self.excluded:
            counts[e["rule"]] = counts.get(e["rule"], 0) + 1
        return dict(sorted(counts.items()))

    def write(self, path: Path) -> str:
        """Write the manifest atomically to PATH and return its hash."""
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return self.hash

    @classmethod
    def read(cls, path: Path, store: Store | None = None) -> Manifest:
        """Load a manifest written by `write`; words sealed since (governance/sealed_manifest.py) are put back from
        STORE (default: the store of the run.json beside PATH), decrypted in memory, and checked against its hash."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            planned, erased = None, ()
            if isinstance(data, dict) and ("sealed_words" in data or "erased" in data):
                from hearthkit.governance.sealed_manifest import verified_content

                raw = data
                data, planned = verified_content(raw, path, store)
                erased = tuple(int(e["item_id"]) for e in (raw.get("erased") or {}).get("items") or [])
            req = data.pop("request")
            req["collections"] = tuple(req["collections"])
            req["approved"] = tuple(req.get("approved", ()))
            out = cls(request=Request(**req), **data)
            out.planned_hash, out.erased = planned, frozenset(erased)
            return out
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HearthError(f"{path}: not a readable manifest ({exc}); recompute it with `hearth plan`") from exc
