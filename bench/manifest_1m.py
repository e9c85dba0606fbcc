"""Benchmark: manifest computation over 1,000,000 synthetic items on SQLite, vs a plain SELECT of the same rows.

The synthetic catalog: 4 collections, 1,000 speakers (a tenth consented to research only, a few with no consent),
~6% of items labelled (non-commercial, secret/sacred, seasonal, culturally sensitive), 1% under protocols, 0.5%
embargoed. It is built once with Core bulk inserts and cached under bench/out/. Only compute_manifest is timed;
the baseline is a plain sqlite3 `SELECT` of the same item columns, in the same order, into tuples, in the
same process.

Usage: .venv/bin/python bench/manifest_1m.py [--items 1000000] [--repeat 3]
Prints one JSON line: {"metric": "manifest 1M items", "value": seconds, "baseline": seconds, "ratio": ...}, wall
time (best of --repeat) and process CPU time (the machine is shared: CPU time shows the cost without the queue).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sqlite3
import time
from datetime import UTC, date, datetime
from pathlib import Path

from sqlalchemy import insert

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import (
    Collection,
    Community,
    Consent,
    Item,
    ItemProtocol,
    Label,
    Person,
    Protocol,
    ProtocolMember,
)
from hearthkit.governance.manifest import Request
from hearthkit.governance.policy import compute_manifest

OUT = Path(__file__).parent / "out"
PURPOSES = ["community_use", "language_revitalization", "education_outreach", "research"]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def build(path: Path, n_items: int, seed: int = 0) -> None:
    """Write the synthetic catalog to PATH with Core bulk inserts (no ORM objects)."""
    rng = random.Random(seed)
    cat = Catalog.open(f"sqlite:///{path}", create=True)
    n_coll, n_speakers, chunk = 4, 1000, 50_000
    with cat.engine.begin() as c:
        c.execute(insert(Community), [{"name": "Ngāti Bench", "created_at": T0}])
        c.execute(insert(Person), [{"name": f"p{k}", "created_at": T0} for k in range(20)])
        c.execute(insert(Protocol), [{"name": "inner", "community_id": 1, "created_at": T0}])
        c.execute(insert(ProtocolMember), [{"protocol_id": 1, "person_id": k} for k in range(1, 6)])
        c.execute(insert(Collection), [{"name": f"coll{k}", "community": "Ngāti Bench", "restricted": False,
                                        "citation": f"Bench collection {k}", "created_at": T0}
                                       for k in range(n_coll)])
        consents = []
        for k in range(1, n_coll + 1):
            consents.append({"collection_id": k, "scope": "collective", "subject": "Ngāti Bench", "given_by": "c",
                             "given_at": T0, "purposes": PURPOSES})
            for sp in range(n_speakers):
                if sp % 97 == 0:
                    continue  # no individual consent on record
                consents.append({"collection_id": k, "scope": "individual", "subject": f"s{sp}", "given_by": f"s{sp}",
                                 "given_at": T0, "purposes": ["research"] if sp % 10 == 0 else PURPOSES})
        c.execute(insert(Consent), consents)
    per = n_items // n_coll
    iid = 0
    for k in range(1, n_coll + 1):
        for start in range(0, per, chunk):
            items, labels, prots = [], [], []
            for j in range(start, min(per, start + chunk)):
                iid += 1
                r = rng.random()
                items.append({"id": iid, "collection_id": k, "external_id": f"c{k}_{j:07d}", "kind": "audio",
                              "content_hash": hashlib.sha256(iid.to_bytes(8, "little")).hexdigest(),
                              "size_bytes": 32000, "media_type": "audio/wav", "duration_s": 2.0,
                              "sample_rate": 16000, "speaker": f"s{rng.randrange(n_speakers)}", "dialect": "d",
                              "gender": "f", "text": "kei te haere te tamaiti ki te kura", "meta": {},
                              "imported_at": T0, "sharing": "all",
                              "embargo_until": date(2030, 1, 1) if r < 0.005 else None})
                if r < 0.03:
                    labels.append({"item_id": iid, "key": "tk:non_commercial", "community": "Ngāti Bench",
                                   "data": {}, "applied_at": T0})
                elif r < 0.04:
                    labels.append({"item_id": iid, "key": "tk:secret_sacred", "community": "Ngāti Bench",
                                   "data": {}, "applied_at": T0})
                elif r < 0.05:
                    labels.append({"item_id": iid, "key": "tk:seasonal", "community": "Ngāti Bench", "data": {},
                                   "season_from": "05-01", "season_to": "08-31", "applied_at": T0})
                elif r < 0.06:
                    labels.append({"item_id": iid, "key": "tk:culturally_sensitive", "community": "Ngāti Bench",
                                   "data": {}, "applied_at": T0})
                elif r < 0.07:
                    prots.append({"item_id": iid, "protocol_id": 1})
            for lab in labels:  # executemany needs the same keys in every row
                lab.setdefault("season_from", None)
                lab.setdefault("season_to", None)
            with cat.engine.begin() as c:
                c.execute(insert(Item), items)
                if labels:
                    c.execute(insert(Label), labels)
                if prots:
                    c.execute(insert(ItemProtocol), prots)
    cat.close()


def baseline(path: Path, names: list[str]) -> int:
    """The raw read: plain sqlite3, the same item columns in the same order, fetched into tuples; no policy."""
    con = sqlite3.connect(path)
    n = 0
    try:
        for name in names:
            (cid,) = con.execute("SELECT id FROM collections WHERE name = ?", (name,)).fetchone()
            cur = con.execute("SELECT id, external_id, content_hash, kind, duration_s, speaker, dialect, gender, "
                              "text, meta, embargo_until, sharing FROM items WHERE collection_id = ? "
                              "ORDER BY external_id", (cid,))
            while chunk := cur.fetchmany(20_000):
                n += len(chunk)
    finally:
        con.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3, help="Timed repetitions of each; the best is reported.")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"manifest_{args.items}.sqlite"
    if not path.exists():
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        build(tmp, args.items)
        tmp.replace(path)
        print(f"built synthetic catalog in {time.perf_counter() - t:.1f} s: {path}", flush=True)
    cat = Catalog.open(f"sqlite:///{path}")
    names = [f"coll{k}" for k in range(4)]
    req = Request("language_revitalization", "p1", tuple(names), "2026-11-27")
    base_times, man_times, base_cpu, man_cpu = [], [], [], []
    for _ in range(args.repeat):  # interleaved, so load on the shared machine hits both alike
        t, c = time.perf_counter(), time.process_time()
        n = baseline(path, names)
        base_times.append(time.perf_counter() - t)
        base_cpu.append(time.process_time() - c)
        t, c = time.perf_counter(), time.process_time()
        man = compute_manifest(cat, req)
        man_times.append(time.perf_counter() - t)
        man_cpu.append(time.process_time() - c)
    t = time.perf_counter()
    digest = man.hash
    hash_s = time.perf_counter() - t
    assert len(man.included) + len(man.excluded) == n
    best, base = min(man_times), min(base_times)
    print(json.dumps({"metric": "manifest 1M items", "items": n, "value": round(best, 2), "unit": "s",
                      "baseline": round(base, 2), "ratio": round(best / base, 2),
                      "cpu_s": round(min(man_cpu), 2), "baseline_cpu_s": round(min(base_cpu), 2),
                      "cpu_ratio": round(min(man_cpu) / min(base_cpu), 2),
                      "included": len(man.included), "excluded": man.excluded_counts(),
                      "canonical_json_and_hash_s": round(hash_s, 2), "manifest_sha256": digest}))
    cat.close()


if __name__ == "__main__":
    main()
