"""Withdrawal impact query over 10,000 models and 1,000,000 items on SQLite (target: at most 2 s).

Baseline in the same run: a plain indexed SELECT of the withdrawn speaker's item ids (the least any answer
must do). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Collection, Item, Model, Run, RunItem
from hearthkit.lineage.withdraw import _items_query, impact


def build(cat: Catalog, n_items: int, n_models: int, per_model: int, n_speakers: int, seed: int = 0) -> None:
    """A synthetic catalog: items over speakers; each model's run holds PER_MODEL random items; 1 in 5 has a parent."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    with cat.engine.begin() as c:
        c.execute(insert(Collection), [{"id": 1, "name": "big", "community": "c", "restricted": False,
                                        "created_at": now}])
        for lo in range(0, n_items, 100_000):
            c.execute(insert(Item), [{"id": i + 1, "collection_id": 1, "external_id": f"u{i}", "kind": "audio",
                                      "content_hash": f"{i:064x}", "size_bytes": 1, "speaker": f"s{i % n_speakers}",
                                      "meta": {}, "imported_at": now} for i in range(lo, min(n_items, lo + 100_000))])
        c.execute(insert(Run), [{"id": r + 1, "name": f"r{r}", "recipe": "asr", "purpose": "research",
                                 "requester": "x", "manifest_hash": "0" * 64, "status": "finished", "config": {},
                                 "created_at": now} for r in range(n_models)])
        batch = []
        for r in range(n_models):
            batch += [{"run_id": r + 1, "item_id": i} for i in rng.sample(range(1, n_items + 1), per_model)]
            if len(batch) >= 200_000:
                c.execute(insert(RunItem), batch)
                batch = []
        if batch:
            c.execute(insert(RunItem), batch)
        c.execute(insert(Model), [{"id": m + 1, "name": f"m{m}", "run_id": m + 1, "path": "-", "status": "active",
                                   "restrictions": [], "metrics": {}, "attribution": [], "created_at": now,
                                   "parent_id": (m - 1 if m % 5 == 0 and m > 0 else None)} for m in range(n_models)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--models", type=int, default=10_000)
    ap.add_argument("--per-model", type=int, default=200, help="manifest items per model")
    ap.add_argument("--speakers", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        cat = Catalog.open(f"sqlite:///{Path(d) / 'c.sqlite'}", create=True)
        t0 = time.perf_counter()
        build(cat, args.items, args.models, args.per_model, args.speakers)
        build_s = time.perf_counter() - t0
        with cat.session() as s:
            coll = s.get(Collection, 1)
            base, query, n_models = [], [], 0
            for k in range(args.repeats):
                q = _items_query(coll, "speaker", f"s{k * 7}")
                t = time.perf_counter()
                s.execute(select(Item.id).where(Item.collection_id == 1, Item.speaker == f"s{k * 7}")).all()
                base.append(time.perf_counter() - t)
                t = time.perf_counter()
                n_models += len(impact(s, q))
                query.append(time.perf_counter() - t)
    med = sorted(query)[len(query) // 2]
    med_base = sorted(base)[len(base) // 2]
    print(json.dumps({"metric": "withdrawal impact 1M items", "items": args.items, "models": args.models,
                      "run_items": args.models * args.per_model, "impact_s_median": round(med, 4),
                      "impact_s_max": round(max(query), 4), "baseline_select_s": round(med_base, 5),
                      "ratio": round(med / med_base, 1), "models_hit_per_query": n_models / args.repeats,
                      "build_s": round(build_s, 1)}))


if __name__ == "__main__":
    main()
