"""A real federation on this machine: a Flower coordinator and three site processes, each with its own workspace
(Māori, Guaraní and Quechua espeak-ng voices), talking TLS over localhost through a recording proxy, every update
signed by its site's key; a withdrawal between rounds, a coordinator restart, a site sending a wrongly shaped
update, a site killed mid-round."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from sqlalchemy import select

from tests.conftest import HEARTH
from tests.federate.proxy import Recorder
from tests.federate.sites import SITES, approve, make_site, write_configs

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _phase(root: Path, cfg: Path, sites: dict[str, Path], faults: dict[str, str], tag: str) -> str:
    """Run the coordinator and the three sites as separate processes until the coordinator ends; its output."""
    env = dict(os.environ, COLUMNS="200", OMP_NUM_THREADS="1")
    log = root / f"coordinator-{tag}.log"
    with log.open("w") as out:
        coord = subprocess.Popen([*HEARTH, "federate", "coordinator", str(cfg), "--folder", str(root / "coord")],
                                 stdout=out, stderr=subprocess.STDOUT, env=env)
        procs = {}
        for s, p in sites.items():
            site_env = {**env, **({"HEARTH_FEDERATE_FAULT": faults[s]} if s in faults else {})}
            procs[s] = subprocess.Popen([*HEARTH, "federate", "join", str(p), "-w", str(root / f"ws-{s}")],
                                        stdout=(root / f"site-{s}-{tag}.log").open("w"), stderr=subprocess.STDOUT,
                                        env=site_env)
        try:
            assert coord.wait(timeout=400) == 0, log.read_text()
            for s, p in procs.items():
                want = 17 if faults.get(s, "").startswith("die:") else 0  # the exit code of a site killed mid-round
                assert p.wait(timeout=90) == want, (root / f"site-{s}-{tag}.log").read_text()
        finally:
            for p in [coord, *procs.values()]:
                if p.poll() is None:
                    p.kill()
    return log.read_text()


def _catalog(root: Path, site: str):
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.workspace import open_workspace

    ws = open_workspace(root / f"ws-{site}")
    return ws, open_workspace_catalog(ws)


def _runs(root: Path, site: str, round_: int) -> list[Path]:
    return sorted((root / f"ws-{site}" / "runs").glob(f"fed-asr-{site}-r{round_:04d}-*"))


def _weights(path: Path) -> list[np.ndarray]:
    from hearthkit.federate.weights import load

    return load(path)[1]


def test_federation_keeps_data_at_sites_and_traces_each_contribution(tiny_speech_archive: Path, tmp_path: Path):
    from hearthkit.catalog.models import Item, Model
    from hearthkit.lineage.withdraw import withdraw
    from hearthkit.store.vault import workspace_store

    for s in SITES:
        make_site(tmp_path, tiny_speech_archive, s)
    spoken = {s: {w.name: w.read_bytes() for w in (tmp_path / f"archive-{s}").glob("*.wav")} for s in SITES}
    assert all(spoken[s][n] != (tiny_speech_archive / n).read_bytes() for s in ("south", "east") for n in spoken[s])
    port = _free_port()
    proxy = Recorder(port)
    cfg, sites = write_configs(tmp_path, port, proxy.port, rounds=2)
    out1 = _phase(tmp_path, cfg, sites, {}, "1")
    assert "6 contributions over 2 rounds" in out1

    # Withdrawal at north after round 2: its contributions are flagged in its own registry at once.
    ws, catalog = _catalog(tmp_path, "north")
    manifest = json.loads((_runs(tmp_path, "north", 1)[0] / "manifest.json").read_text())
    gone = manifest["included"][0]["external_id"]
    withdraw(catalog, workspace_store(ws), "korero-north", "item", gone, by="steward-north", reason="family asked")
    with catalog.session() as s:
        marked = dict(s.execute(select(Model.name, Model.status).where(Model.name.like("fed-asr-north-%"))).all())
    assert len(marked) == 2 and set(marked.values()) == {"needs-retrain"}
    approve(catalog, "north")  # its stewards approve the new manifest, so north may rejoin
    catalog.close()

    # The coordinator restarts with one more round; in it east sends a wrongly shaped update and south is killed
    # mid-round (after planning its run, before sending anything).
    spec = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    cfg.write_text(yaml.safe_dump({**spec, "rounds": 3}, allow_unicode=True), encoding="utf-8")
    out2 = _phase(tmp_path, cfg, sites, {"east": "bad_shape:3", "south": "die:3"}, "2")
    proxy.close()
    assert "resuming after round 2" in out2
    assert "round 3: update of east refused: tensor" in out2 and "expected" in out2

    coord = tmp_path / "coord"
    lineage = json.loads((coord / "lineage.json").read_text())
    assert [r["round"] for r in lineage["rounds"]] == [1, 2, 3]
    assert all(c["signed"] for c in lineage["contributions"])  # each verified against its site's listed key
    assert lineage["rounds"][2]["accepted"] == ["north"]
    assert any(e["event"] == "no_answer" and e["round"] == 3 for e in lineage["events"])  # south, killed
    assert not (_runs(tmp_path, "south", 3)[0] / "final").exists()
    # Neither the refused update nor the dead site left a trace: round 3's global model is north's update alone.
    north3 = _weights(_runs(tmp_path, "north", 3)[0] / "final" / "model.safetensors")
    glob3 = _weights(coord / "rounds" / "round_0003" / "global.safetensors")
    for g, a in zip(glob3, north3, strict=True):
        np.testing.assert_allclose(g, a, rtol=0, atol=1e-6)
    refused = [e for e in lineage["events"] if e["event"] == "refused"]
    assert refused and refused[0]["site"] == "east" and "shape" in refused[0]["reason"]

    # Withdrawal: north's later manifest differs, its earlier contributions are flagged, the model needs retraining.
    north = [c for c in lineage["contributions"] if c["site"] == "north"]
    assert north[0]["manifest"] == north[1]["manifest"] != north[2]["manifest"]
    assert all(c.get("flagged") for c in north[:2]) and not north[2].get("flagged")
    assert lineage["status"] == "needs-retrain" and "north" in lineage["status_reason"]
    assert any(e["event"] == "manifest_changed" and e["site"] == "north" for e in lineage["events"])

    # The card: each site's manifest hash (and approval), the union of restrictions, the communities.
    card = (coord / "model" / "model_card.md").read_text(encoding="utf-8")
    for c in lineage["contributions"]:
        assert c["manifest"] in card
    assert "tk:secret_sacred" in card and "tk:non_commercial" in card and "needs-retrain" in card
    for community, _, _ in SITES.values():
        assert community in card
    assert "## Benefit ledger" in card and "| Te Hapori Raki | 24 | 43% |" in card  # 3 of 7 accepted updates

    # The site's own ledger: its three rounds as one federated model, reads as its access logs hold them.
    from hearthkit.lineage.ledger import community_ledger

    ws, catalog = _catalog(tmp_path, "north")
    row = next(r for r in community_ledger(ws, catalog, "Te Hapori Raki") if r["kind"] == "federated")
    catalog.close()
    logs = [log for r in range(1, 4) for log in (_runs(tmp_path, "north", r)[0] / "access").glob("*.jsonl")]
    assert row["model"] == "fed-asr (federated)" and len(row["runs"]) == 3
    assert row["reads"] == sum(len(log.read_text().splitlines()) for log in logs) > 0
    assert row["compute"]["cpu"] > 0

    # No byte run of any site's recordings or transcripts reached the coordinator: its traffic and its disk.
    traffic = proxy.captured()
    assert len(traffic) > 100_000  # the weights did pass through the proxy
    # ... encrypted: no 64-byte run of a global model the coordinator sent (round 1's, sent in round 2) is in it.
    sent = max(_weights(coord / "rounds" / "round_0001" / "global.safetensors"), key=lambda a: a.size).tobytes()
    assert len(sent) > 2048 and not any(sent[o:o + 64] in traffic for o in range(0, 2048, 64))
    assert "TLS" in card and "signed with its site's Ed25519 key" in card
    disk = b"".join(p.read_bytes() for p in coord.rglob("*") if p.is_file())
    disk += b"".join(p.read_bytes() for p in tmp_path.glob("coordinator-*.log"))
    checked = 0
    for s in SITES:
        for wav in (tmp_path / f"archive-{s}").glob("*.wav"):
            pcm = wav.read_bytes()[44:]
            for off in range(0, len(pcm) - 32, max(32, len(pcm) // 8)):
                run = pcm[off:off + 32]
                if run.count(run[:2]) == 16:  # silence is the same in every file; look at speech
                    continue
                assert run not in traffic and run not in disk, f"{wav.name} bytes at {off} left the site"
                checked += 1
            text = wav.with_suffix(".txt").read_text(encoding="utf-8").strip().encode()
            assert text not in traffic and text not in disk, f"{wav.name}'s transcript left the site"
    assert checked > 100

    # Each site's access logs hold only its own items; what its policy excludes was never read.
    for s in SITES:
        ws, catalog = _catalog(tmp_path, s)
        with catalog.session() as sess:
            items = sess.scalars(select(Item)).all()
            own = {i.id: {i.content_hash, (i.meta or {}).get("sealed_text")} for i in items}
            excluded = {i.id for i in items if i.speaker == "tama"}  # no individual consent on record
        catalog.close()
        reads = [json.loads(line) for log in (ws.root / "runs").glob("*/access/*.jsonl")
                 for line in log.read_text().splitlines() if line.strip()]
        assert reads and all(r["content_hash"] in own.get(r["item_id"], ()) for r in reads), s
        assert excluded and not {r["item_id"] for r in reads} & excluded, f"{s}: an item without consent was read"
