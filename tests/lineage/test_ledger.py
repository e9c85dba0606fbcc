"""`hearth ledger`: a community's contributions to a centralised model, checked against the run's access logs
and the catalog (not against the manifest the ledger itself reads); an export shows as a later use."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sqlalchemy import select
from typer.testing import CliRunner

COMMUNITY = "Te Hapori Tauira (demo community)"


def _copy(tiny_ws: Path, dest: Path) -> Path:
    pristine = tiny_ws.parent / "pristine" / tiny_ws.name  # as trained, before other tests added events
    src = pristine if pristine.is_dir() else tiny_ws
    shutil.copytree(src, dest / "ws")
    keys = src.parent / f"{src.name}.keys"
    if keys.exists():
        shutil.copytree(keys, dest / "ws.keys")
    return dest / "ws"


def test_ledger_counts_what_training_read_and_later_uses(tiny_asr_model, tmp_path: Path):
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.catalog.models import Collection, Item
    from hearthkit.cli.main import app
    from hearthkit.engine.export import export_model
    from hearthkit.workspace import open_workspace

    ws = open_workspace(_copy(tiny_asr_model[0], tmp_path))
    catalog = open_workspace_catalog(ws)
    export_model(catalog, "tiny-asr", tmp_path / "exported")  # a later use: one export event
    with catalog.session() as s:
        rows = s.execute(select(Item.id, Item.duration_s, Collection.community).join(Collection)).all()
    catalog.close()
    community_of = {i: c for i, _, c in rows}
    # Independently of the ledger: every training read in the access logs, placed by item id in the catalog.
    run_dir = ws.run_dir("tiny-asr")
    reads = [json.loads(line) for log in (run_dir / "access").glob("*.jsonl")
             if not log.name.startswith(("eval", "calibrate"))
             for line in log.read_text().splitlines() if line.strip()]
    ours = [r for r in reads if community_of[r["item_id"]] == COMMUNITY]
    manifest_ids = {e["item_id"] for e in json.loads((run_dir / "manifest.json").read_text())["included"]}
    hours = sum(d or 0.0 for i, d, c in rows if i in manifest_ids and c == COMMUNITY) / 3600

    res = CliRunner().invoke(app, ["ledger", COMMUNITY, "--json", "-w", str(ws.root)])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    row = next(m for m in got["models"] if m["model"] == "tiny-asr")
    assert row["kind"] == "centralised" and row["runs"] == ["tiny-asr"]
    assert row["items"] == len(manifest_ids) and abs(row["hours"] - hours) < 1e-9
    assert row["reads"] == len(ours) > 0 and row["share"] == len(ours) / len(reads)
    assert row["uses"] == {"export": 1, "serve": 0}
    assert row["compute"].get("cpu", 0) > 0 and row["slurm_accounts"] == []

    res = CliRunner().invoke(app, ["ledger", "Nobody", "-w", str(ws.root)])
    assert res.exit_code == 2 and "no collection of community 'Nobody'" in res.output and "Traceback" not in res.output
