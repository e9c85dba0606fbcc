"""Lineage end to end: A, B transferred from A; withdraw a speaker only A saw; both need retraining; retrain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hearthkit.catalog.db import Catalog
from hearthkit.errors import HearthError
from hearthkit.lineage.registry import guard
from hearthkit.workspace import open_workspace
from tests import in_process
from tests.conftest import hearth

pytestmark = pytest.mark.slow


def _config(path: Path, name: str, collection: str, init_from: str | None = None, requester: str = "team",
            request_id: int | None = None) -> Path:
    cfg = {"name": name, "recipe": "asr", "init_from": init_from,
           "request": {"purpose": "research", "requester": requester, "collections": [collection], "id": request_id},
           "split": {"test_fraction": 0.25},
           "model": {"arch": "bigru", "conv_channels": 24, "hidden": 24, "layers": 1},
           "train": {"steps": 12, "batch_size": 4, "checkpoint_every": 12, "log_every": 6, "warmup": 2}}
    out = path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def _second_collection(archive: Path, dest: Path) -> Path:
    """The same recordings minus hemi's, as another collection: 'more data' that never had hemi."""
    shutil.copytree(archive, dest)
    for p in dest.glob("hemi_*"):
        p.unlink()
    info = yaml.safe_load((dest / "archive.yaml").read_text())
    info["collection"]["name"] = "korero-2"
    (dest / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True))
    rows = (dest / "metadata.csv").read_text().splitlines()
    (dest / "metadata.csv").write_text("\n".join(r for r in rows if not r.startswith("hemi_")) + "\n")
    return dest


def _pcm_probe(wav: Path) -> bytes:
    """64 bytes from the middle of a recording's samples: if these exist anywhere, the audio does."""
    data = wav.read_bytes()
    mid = len(data) // 2
    return data[mid:mid + 64]


def test_withdraw_speaker_marks_models_and_retrain(workspace: Path, speech_archive: Path, tmp_path: Path) -> None:
    second = _second_collection(speech_archive, tmp_path / "second")
    hearth("data", "import", str(speech_archive), ws=workspace)
    hearth("data", "import", str(second), ws=workspace)
    hearth("train", str(_config(tmp_path, "A", "demo-korero")), ws=workspace)
    out_b = hearth("train", str(_config(tmp_path, "B", "korero-2", init_from="A")), ws=workspace).stdout
    assert "initialised" in out_b and "from A" in out_b
    card_b = (workspace / "models" / "B" / "model_card.md").read_text()
    assert "Initialised from `A`" in card_b
    assert "tk:non_commercial" in yaml.safe_load(card_b.split("---")[1])["hearthkit"]["restrictions"]

    probes = [_pcm_probe(p) for p in sorted(speech_archive.glob("hemi_*.wav"))]
    out = hearth("consent", "withdraw", "-c", "demo-korero", "--speaker", "hemi", "--by", "hemi", ws=workspace).stdout
    assert "12 items" in out
    rows = {cells[0]: cells for line in out.splitlines()
            if len(cells := [c.strip() for c in line.strip("│ ").split("│")]) == 6}
    in_a = sum(e["speaker"] == "hemi" for e in json.loads((workspace / "runs/A/manifest.json").read_text())["included"])
    assert in_a > 0 and rows["A"][2] == str(in_a) and rows["A"][4] == "–" and rows["A"][5] == "needs-retrain"
    assert rows["B"][2] == "0" and rows["B"][4] == "A" and rows["B"][5] == "needs-retrain"

    ws = open_workspace(workspace)
    cat = Catalog.open(ws.db_url)
    with cat.session() as s:
        for name in ("A", "B"):
            with pytest.raises(HearthError, match="needs retraining"):
                guard(s, name, "research")

    # Retraining B first is refused: its parent must be retrained first.
    proc = hearth("retrain", "B", ws=workspace, check=False)
    assert proc.returncode == 2 and "needs retraining first" in proc.stderr
    hearth("retrain", "A", ws=workspace)
    out = hearth("retrain", "B", ws=workspace).stdout
    assert "B-r1 supersedes B" in out
    for new, old in (("A-r1", "A"), ("B-r1", "B")):
        man = json.loads((workspace / "runs" / new / "manifest.json").read_text())
        assert not [e for e in man["included"] if e["speaker"] == "hemi"]
        with cat.session() as s:
            with pytest.raises(HearthError, match="revoked"):
                guard(s, old, "research")
            assert guard(s, new, "research").status == "active"
    for old in ("A", "B"):
        proc = hearth("export", old, str(tmp_path / f"export-{old}"), ws=workspace, check=False)
        assert proc.returncode == 2 and "revoked" in proc.stderr and not (tmp_path / f"export-{old}").exists()
        wav = next(second.glob("mere_*.wav"))
        proc = hearth("transcribe", old, str(wav), "--out", str(tmp_path / f"tx-{old}"), ws=workspace, check=False)
        assert proc.returncode == 2 and "revoked" in proc.stderr
    assert "exported B-r1" in hearth("export", "B-r1", str(tmp_path / "export-B-r1"), ws=workspace).stdout
    assert "audit chain intact" in hearth("audit", "verify", ws=workspace).stdout
    show = hearth("models", "show", "B-r1", ws=workspace).stdout
    assert "parents: A-r1" in show

    # The withdrawn audio is gone from every file under the workspace.
    for f in workspace.rglob("*"):
        if f.is_file():
            blob = f.read_bytes()
            assert not any(p in blob for p in probes), f"withdrawn audio found in {f}"


def test_inheritance_refuses_commercial_use(tiny_asr_model, tmp_path: Path) -> None:
    """A model that saw tk:non_commercial items refuses commercial use, and so does its child.

    The model is the session's tiny Conformer (tests/conftest.py `tiny_asr_model`, trained by `hearth train` on the
    tiny archive, whose tk:non_commercial items it was permitted for its purpose); nothing here changes it."""
    ws_root, _, cfg_path = tiny_asr_model
    card = (ws_root / "models/tiny-asr/model_card.md").read_text()
    assert "tk:non_commercial" in yaml.safe_load(card.split("---")[1])["hearthkit"]["restrictions"]  # it saw some
    ws = open_workspace(ws_root)
    cat = Catalog.open(ws.db_url)
    with cat.session() as s:
        with pytest.raises(HearthError, match="tk:non_commercial"):
            guard(s, "tiny-asr", "commercial")
        assert guard(s, "tiny-asr", "research").name == "tiny-asr"
    proc = hearth("export", "tiny-asr", str(tmp_path / "out"), "--purpose", "commercial", ws=ws_root, check=False)
    assert proc.returncode == 2 and "tk:non_commercial" in proc.stderr and "no commercial use" in proc.stderr
    assert not (tmp_path / "out").exists()
    # Transfer for a commercial purpose from a non-commercial parent is refused before any training.
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg.update(name="inherit-c", init_from="tiny-asr")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = hearth("train", str(tmp_path / "c.yaml"), "--set", "request.purpose=commercial", ws=ws_root, check=False)
    assert proc.returncode == 2 and "no commercial use" in proc.stderr
    # The same parent reached by its folder (asr's model.init_from) gets the same check.
    cfg.update(name="inherit-d", init_from=None)
    (tmp_path / "d.yaml").write_text(yaml.safe_dump(cfg))
    proc = hearth("train", str(tmp_path / "d.yaml"), "--set", "request.purpose=commercial", "--set",
                  f"model.init_from={ws.models_dir / 'tiny-asr'}", ws=ws_root, check=False)
    assert proc.returncode == 2 and "no commercial use" in proc.stderr and "Traceback" not in proc.stderr
    assert not [n for n in ("inherit-c", "inherit-d") if (ws.run_dir(n) / "run.json").exists()]


def test_protocol_restricted_model_refuses_outsiders(workspace: Path, speech_archive: Path, tmp_path: Path,
                                                     monkeypatch) -> None:
    """A steward-approved run on tk:women_restricted items: the model is restricted to that protocol's members.

    W is planned, trained and published by the library calls `hearth train` makes, the trainer in this process
    (tests/in_process.py); the CLI's torchrun path for governed runs is proven by the withdrawal test above."""
    import re

    community = "Te Hapori Tauira (demo community)"
    hearth("data", "import", str(speech_archive), ws=workspace)
    hearth("people", "add", "aroha", "--community", community, "--role", "steward", "--as-owner", ws=workspace)
    hearth("people", "add", "mere", "--community", community, "--role", "member", "--by", "aroha", ws=workspace)
    hearth("protocol", "create", "wahine", "--community", community, "--by", "aroha", ws=workspace)
    hearth("protocol", "add-member", "wahine", "mere", "--by", "aroha", ws=workspace)
    hearth("labels", "apply", "tk:women_restricted", "-c", "demo-korero", "-i", "mere_0001", "--protocol", "wahine",
           "--by", "aroha", ws=workspace)
    out = hearth("request", "--purpose", "research", "--requester", "mere", "-c", "demo-korero", "--recipe", "asr",
                 ws=workspace).stdout
    rid = int(re.search(r"request (\d+): pending", out).group(1))
    hearth("approve", str(rid), "--by", "aroha", ws=workspace)
    run = in_process.plan(workspace, _config(tmp_path, "W", "demo-korero", requester="mere", request_id=rid))
    assert in_process.train_run(run, monkeypatch) == "finished"
    in_process.publish(workspace, run)
    manifest = json.loads((workspace / "runs/W/manifest.json").read_text())
    assert "mere_0001" in {e["external_id"] for e in manifest["included"]}  # approved: trained on
    card = yaml.safe_load((workspace / "models/W/model_card.md").read_text().split("---")[1])
    assert {"tk:women_restricted", "protocol:wahine"} <= set(card["hearthkit"]["restrictions"])
    proc = hearth("export", "W", str(tmp_path / "out-rangi"), "--requester", "rangi", ws=workspace, check=False)
    assert proc.returncode == 2 and "protocol wahine" in proc.stderr and not (tmp_path / "out-rangi").exists()
    assert "exported W" in hearth("export", "W", str(tmp_path / "out-mere"), "--requester", "mere", ws=workspace).stdout
