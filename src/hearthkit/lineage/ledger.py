"""The benefit ledger: per community and per model, what its data and compute went into and who used the result.

Read from the run records themselves: the manifest (items and hours of the community's data), the governed
reader's access logs (what training actually read), the run folder (workers, device kind, SLURM account) and the
audit log (exports, serving). Federated contributions are the site's own round runs (federate/site.py).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC
from pathlib import Path

from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AuditEvent, Collection, Model, Run
from hearthkit.errors import HearthError
from hearthkit.workspace import Workspace

_DEVICE = re.compile(r"process group: .*, device (\w+)")
_ACCOUNT = re.compile(r"^#SBATCH --account=(\S+)", re.M)


def _reads(run_dir: Path) -> list[dict]:
    """Training reads of RUN_DIR (the workers' and preparation's access logs; evaluation reads are not training)."""
    out = []
    for log in sorted((run_dir / "access").glob("*.jsonl")):
        if log.name.startswith(("eval", "calibrate")) or "-valid" in log.name:
            continue
        out += [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    return out


def _compute(run_dir: Path, run: Run) -> dict:
    """Worker-hours by device kind and the SLURM account, from the run folder."""
    rec = run_dir / "compute.json"  # a federated round records its own
    if rec.is_file():
        c = json.loads(rec.read_text())
        return {"device": c["device"], "worker_hours": c["workers"] * c["seconds"] / 3600, "slurm_account": None}
    log = run_dir / "logs" / "rank0.log"
    m = _DEVICE.search(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else None
    end = next((p for p in (run_dir / "state.json", run_dir / "final" / "model.safetensors") if p.is_file()), None)
    seconds = 0.0
    if end is not None and run.created_at is not None:
        start = run.created_at if run.created_at.tzinfo else run.created_at.replace(tzinfo=UTC)
        seconds = max(0.0, end.stat().st_mtime - start.timestamp())
    workers = int(((run.config or {}).get("launch") or {}).get("nproc", 1))
    sbatch = next(iter(sorted((run_dir / "slurm").glob("*.sbatch"))), None) if (run_dir / "slurm").is_dir() else None
    account = _ACCOUNT.search(sbatch.read_text()) if sbatch else None
    return {"device": m.group(1) if m else "unknown", "worker_hours": workers * seconds / 3600,
            "slurm_account": account.group(1) if account else None}


def _uses(catalog: Catalog, names: set[str]) -> dict[str, Counter]:
    """Export and serve events per model name, from the audit log."""
    out: dict[str, Counter] = {n: Counter() for n in names}
    with catalog.session() as s:
        for kind, data in s.execute(select(AuditEvent.kind, AuditEvent.data)
                                    .where(AuditEvent.kind.in_(("export", "serve")))):
            event = json.loads(data)
            if kind == "export" and "to" not in event:
                continue  # publishing the model card in the workspace is logged as "export" too; not a later use
            if event.get("model") in out:
                out[event["model"]][kind] += 1
    return out


def community_ledger(ws: Workspace, catalog: Catalog, community: str, only_run: str | None = None) -> list[dict]:
    """One row per model (a federation counts as one) that learned from COMMUNITY's collections in this workspace
    (ONLY_RUN: that run's row alone, the other runs' records left unread)."""
    with catalog.session() as s:
        colls = set(s.scalars(select(Collection.name).where(Collection.community == community)))
        if not colls:
            known = sorted(set(s.scalars(select(Collection.community))))
            raise HearthError(f"no collection of community {community!r} in this workspace; known: "
                              f"{', '.join(known) or 'none'}")
        runs = list(s.scalars(select(Run).order_by(Run.id)))
        models = {m.run_id: m.name for m in s.scalars(select(Model))}
        for r in runs:
            s.expunge(r)
    rows: dict[str, dict] = {}
    for run in runs:
        if only_run is not None and run.name != only_run:
            continue
        run_dir = ws.run_dir(run.name)
        if not (run_dir / "manifest.json").is_file():
            continue
        included = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["included"]
        mine = [e for e in included if e.get("collection") in colls]
        if not mine:
            continue
        digests = {e["content_hash"] for e in mine} | {(e.get("meta") or {}).get("sealed_text") for e in mine}
        reads = _reads(run_dir)
        own_reads = sum(1 for r in reads if r["content_hash"] in digests)
        fed = run_dir / "federation.json"
        if fed.is_file():
            f = json.loads(fed.read_text())
            key, kind, model = f"federated:{f['federation']}", "federated", f"{f['federation']} (federated)"
        else:
            key, kind, model = run.name, "centralised", models.get(run.id)
        row = rows.setdefault(key, {"model": model, "kind": kind, "runs": [], "items": 0, "hours": 0.0,
                                    "reads": 0, "all_reads": 0, "compute": {}, "slurm_accounts": [],
                                    "uses": {"export": 0, "serve": 0}})
        row["runs"].append(run.name)
        # The manifest of the latest round (or the run): what of the community's data the model may learn from.
        row["items"] = len(mine)
        row["hours"] = sum(float(e.get("duration_s") or 0.0) for e in mine) / 3600
        row["reads"] += own_reads
        row["all_reads"] += len(reads)
        c = _compute(run_dir, run)
        row["compute"][c["device"]] = row["compute"].get(c["device"], 0.0) + c["worker_hours"]
        if c["slurm_account"] and c["slurm_account"] not in row["slurm_accounts"]:
            row["slurm_accounts"].append(c["slurm_account"])
    uses = _uses(catalog, {r["model"] for r in rows.values() if r["kind"] == "centralised" and r["model"]})
    for r in rows.values():
        r["share"] = r["reads"] / r["all_reads"] if r["all_reads"] else 0.0
        if r["model"] in uses:
            r["uses"] = dict(uses[r["model"]]) | {k: uses[r["model"]].get(k, 0) for k in ("export", "serve")}
        if r["model"] is None:
            r["model"] = f"(run {r['runs'][-1]}, not published)"
    return list(rows.values())


def run_ledger(ws: Workspace, catalog: Catalog, run_name: str) -> list[dict]:
    """The ledger rows of one centralised run, one per community whose collections its manifest includes, computed
    by `community_ledger` itself (so a card says what `hearth ledger` says)."""
    manifest = ws.run_dir(run_name) / "manifest.json"
    if not manifest.is_file():
        return []
    named = {e.get("collection") for e in json.loads(manifest.read_text(encoding="utf-8"))["included"]}
    with catalog.session() as s:
        communities = sorted(set(s.scalars(select(Collection.community).where(Collection.name.in_(named)))))
    out = []
    for community in communities:
        out += [{"community": community, **r} for r in community_ledger(ws, catalog, community, only_run=run_name)
                if run_name in r["runs"]]
    return out
