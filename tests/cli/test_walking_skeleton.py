"""End to end through the real CLI: import → plan → governed torchrun training → resume → evaluation → card."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import HEARTH, hearth

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, steps: int, every: int) -> Path:
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "demo-asr.yaml").read_text())
    cfg["model"].update(conv_channels=32, hidden=32, layers=1)
    cfg["train"].update(steps=steps, batch_size=4, checkpoint_every=every, log_every=5, warmup=5)
    cfg["split"]["test_fraction"] = 0.25
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _excluded_ids(manifest: dict) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for e in manifest["excluded"]:
        out.setdefault(e["rule"], set()).add(e["item_id"])
    return out


def test_governed_training_end_to_end(workspace: Path, speech_archive: Path, tmp_path: Path) -> None:
    hearth("data", "import", str(speech_archive), ws=workspace)
    config = _config(tmp_path, steps=60, every=20)  # killed once step 20 is saved; 40 steps left to resume

    plan = hearth("plan", str(config), ws=workspace).stdout
    assert "tk:secret_sacred" in plan and "individual_consent" in plan and "purpose_not_consented" in plan

    # First attempt: kill the whole `hearth train` process group once a checkpoint exists.
    env = dict(os.environ, HEARTH_WORKSPACE=str(workspace), COLUMNS="200")
    proc = subprocess.Popen([*HEARTH, "train", str(config)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ckpts = workspace / "runs" / "demo-asr" / "checkpoints"
    deadline = time.time() + 300
    while time.time() < deadline and not any(p.name.startswith("step_") for p in ckpts.glob("step_*")):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    first = sorted(ckpts.glob("step_*"))
    assert first, "a checkpoint is written"
    killed_at = int(first[-1].name.split("_")[1])
    assert killed_at < 60, "the job was killed before it finished"

    # Same command again: resumes from the checkpoint and the step counter continues.
    out = hearth("train", str(config), ws=workspace).stdout
    assert f"resumed from checkpoint step_{killed_at:08d} at step {killed_at}" in out
    assert f"steps {killed_at}->60" in out
    steps_logged = [json.loads(x)["step"] for x in (workspace / "runs/demo-asr/metrics.jsonl").read_text().splitlines()]
    assert steps_logged[-1] == 60

    # Governance: no secret/sacred item, no item of the unconsented speaker in the manifest or ever read.
    run = workspace / "runs" / "demo-asr"
    manifest = json.loads((run / "manifest.json").read_text())
    excluded = _excluded_ids(manifest)
    meta = {r["file"][:-4]: r for r in __import__("csv").DictReader((speech_archive / "metadata.csv").open())}
    secret = {k for k, r in meta.items() if "tk:secret_sacred" in r["labels"]}
    unconsented = {k for k, r in meta.items() if r["speaker"] == "tama"}
    included_ext = {e["external_id"] for e in manifest["included"]}
    assert secret and unconsented
    assert not (secret | unconsented) & included_ext
    # Secret/sacred items of speakers who consented to this purpose are excluded for that label; the others are
    # excluded first for lack of consent (tama: none; kiri: research only), rules no approval can lift.
    research_only = {k for k, r in meta.items() if r["speaker"] == "kiri"}
    assert {e["external_id"] for e in manifest["excluded"]
            if e["rule"] == "tk:secret_sacred"} == secret - unconsented - research_only
    assert excluded["individual_consent"] == {e["item_id"] for e in manifest["excluded"]
                                              if e["external_id"] in unconsented}
    read_ids = set()
    for log in (run / "access").glob("*.jsonl"):
        read_ids |= {json.loads(line)["item_id"] for line in log.read_text().splitlines()}
    assert read_ids, "the loader recorded its reads"
    allowed = {e["item_id"] for e in manifest["included"]}
    assert read_ids <= allowed
    assert not read_ids & set().union(*excluded.values())

    # Model card: per-group table and the inherited non-commercial label.
    card = (workspace / "models" / "demo-asr" / "model_card.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert "tk:non_commercial" in front["hearthkit"]["restrictions"]
    assert "non-commercial" in card
    assert "| speaker | hemi |" in card and "| dialect | raki |" in card and "| dialect | tonga |" in card
    splits = {r["dataset"]["split"] for r in front["model-index"][0]["results"]}
    assert "held-out, speaker=mere" in splits
    assert (workspace / "models" / "demo-asr" / "model.safetensors").stat().st_size > 1000


def test_training_refuses_when_catalog_changed(workspace: Path, speech_archive: Path, tmp_path: Path) -> None:
    """A run cannot resume once its manifest no longer holds (e.g. new consent changes what is allowed)."""
    hearth("data", "import", str(speech_archive), ws=workspace)
    config = _config(tmp_path, steps=5, every=5)
    from hearthkit.catalog.db import Catalog
    from hearthkit.engine.config import load_config
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace

    ws = open_workspace(workspace)
    catalog = Catalog.open(ws.db_url)
    plan_run(ws, catalog, load_config(config))
    archive = yaml.safe_load((speech_archive / "archive.yaml").read_text())
    archive["individual_consent"].append({"subject": "tama", "given_by": "tama", "given_at": "2026-04-01",
                                          "purposes": ["language_revitalization"]})
    (speech_archive / "archive.yaml").write_text(yaml.safe_dump(archive, allow_unicode=True))
    hearth("data", "import", str(speech_archive), ws=workspace)
    proc = hearth("train", str(config), ws=workspace, check=False)
    assert proc.returncode == 2
    assert "catalog changed since it was planned" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_shows_examples() -> None:
    """The installed entry point prints help with an example; so does every command (the same typer app, run in
    this process: an interpreter per command cost a second each and proved nothing more)."""
    import re

    from typer.testing import CliRunner

    from hearthkit.cli.main import app

    out = subprocess.run([*HEARTH, "--help"], capture_output=True, text=True, env=dict(os.environ, COLUMNS="200"),
                         check=True).stdout
    assert "Example: hearth" in out
    commands = [["init"], ["data"], ["data", "import"], ["data", "ls"], ["demo-data"], ["demo-data", "speech"],
                ["plan"], ["train"], ["retrain"], ["models"], ["models", "ls"], ["models", "show"], ["consent"],
                ["consent", "withdraw"], ["lineage"], ["lineage", "export"], ["data", "card"], ["new"], ["schema"],
                ["runs"], ["jobs"]]
    for cmd in commands:
        res = CliRunner().invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0, (cmd, res.output)
        assert "Example: hearth" in " ".join(re.sub(r"[│╭╮╰╯─]", " ", res.output).split()), cmd


def test_no_workspace_is_one_clear_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "HEARTH_WORKSPACE"}
    proc = subprocess.run([*HEARTH, "data", "ls"], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 2
    assert "no hearthkit workspace here" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert sys.executable  # the CLI ran under this interpreter
