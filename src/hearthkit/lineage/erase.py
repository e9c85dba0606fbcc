"""After a withdrawal: erase the withdrawn items' words from what the workspace derived from them.

Run manifests (`runs/*/manifest.json`, clear or sealed) keep their entries, which are evidence, but lose the entries'
words, recorded under `erased` so the file still verifies (governance/sealed_manifest.py); spoken-term indexes
(`indexes/*`) lose the items altogether: their entries, posteriorgram objects and the words in the index's manifest
(recipes/kws/index.py). Each step writes the new file or object first and replaces by one atomic rename; running it
again finishes an interrupted erasure and otherwise changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection
from hearthkit.errors import HearthError
from hearthkit.store.vault import Store


@dataclass
class Erased:
    """What erasing a withdrawal's derived copies did, and what it could not read (its words may remain)."""

    manifests: int = 0
    after: dict[str, str] = field(default_factory=dict)  # run manifest (relative path) -> sha256 after erasure
    index_items: int = 0
    unreadable: list[str] = field(default_factory=list)  # 'path: why', for a steward to fix


def erase_derived(catalog: Catalog, store: Store, collection: str, item_ids: set[int], withdrawal: dict) -> Erased:
    """Erase the words of ITEM_IDS (items of COLLECTION, withdrawn by WITHDRAWAL: {"withdrawal": id, "at": date})
    from the run manifests and spoken-term indexes of the workspace STORE belongs to."""
    from hearthkit.governance.sealed_manifest import erase_from_manifest
    from hearthkit.ingest.sealing import workspace_for
    from hearthkit.recipes.kws.index import erase_from_indexes

    out = Erased()
    ws = workspace_for(catalog, store)
    if ws is None or not item_ids:
        return out
    with catalog.session() as s:
        communities = dict(s.execute(select(Collection.name, Collection.community)).all())
    named = {json.dumps(collection, ensure_ascii=False), json.dumps(collection)}
    for path in sorted(ws.runs_dir.glob("*/manifest.json")) if ws.runs_dir.is_dir() else []:
        try:
            if not any(x in path.read_text(encoding="utf-8") for x in named):
                continue  # names no entry of the collection: left unparsed (a manifest may be large)
            after = erase_from_manifest(path, store, item_ids, withdrawal, communities)
            if after:
                out.manifests += 1
                out.after[_rel(path, ws.root)] = after
        except (OSError, ValueError, KeyError, TypeError, HearthError) as exc:
            out.unreadable.append(f"{_rel(path, ws.root)}: {str(exc).removeprefix(f'{path}: ')}")
    if (ws.root / "indexes").is_dir():
        failed: list[tuple[Path, str]] = []  # one index that cannot be erased never stops the others
        out.index_items = erase_from_indexes(store, ws.root / "indexes", collection, item_ids, withdrawal,
                                             communities[collection], failed)
        out.unreadable += [f"{_rel(path, ws.root)}: {why.removeprefix(f'{path}: ')}" for path, why in failed]
    return out


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
