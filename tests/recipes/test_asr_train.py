"""End to end: a tiny Conformer-CTC trained by `hearth train` (real torchrun) on synthetic espeak-ng speech,
then a second model initialised from it (transfer) whose card records the parent and its data. The second is
planned, trained and published by the library calls `hearth train` makes, with the trainer in this process
(tests/in_process.py); transfer through `hearth train` and torchrun is proven by tests/lineage/test_withdrawal.py."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from safetensors.torch import load_file

from tests import in_process

pytestmark = pytest.mark.slow


def _front(card: str) -> dict:
    return yaml.safe_load(card.split("---", 2)[1])


def test_tiny_conformer_trains_end_to_end(tiny_asr_model):
    ws, out, _ = tiny_asr_model
    losses = [json.loads(x)["loss"] for x in (ws / "runs" / "tiny-asr" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 4 and losses[-1] < losses[0]  # it learns
    folder = ws / "models" / "tiny-asr"
    state = load_file(str(folder / "model.safetensors"))
    assert any(k.startswith("blocks.0.att") for k in state)  # a Conformer, as configured
    assert (folder / "prep" / "lm.json").is_file()  # the n-gram for shallow fusion, fitted on training text
    front = _front((folder / "model_card.md").read_text(encoding="utf-8"))
    splits = {r["dataset"]["split"] for r in front["model-index"][0]["results"]}
    assert "held-out, overall=all" in splits and any(s.startswith("held-out, speaker=") for s in splits)
    evaluation = json.loads((folder / "evaluation.json").read_text())
    overall = next(r for r in evaluation["rows"] if r["by"] == "overall")
    assert overall["n"] > 0 and math.isfinite(overall["cer"])


def test_transfer_initialises_from_the_parent_and_records_lineage(tiny_asr_model, tmp_path, monkeypatch):
    ws, _, cfg_path = tiny_asr_model
    parent = ws / "models" / "tiny-asr"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["name"] = "tiny-asr-child"
    cfg["model"]["init_from"] = str(parent)
    cfg["train"].update(steps=2, log_every=1, checkpoint_every=2, lr=1e-9, warmup=1)
    cfg["model"]["decode"] = {"beam": 1}  # decoding may differ from the parent's; greedy keeps the test short
    cfg["split"] = {"by": "speaker", "test_values": ["mere"]}  # speaker-disjoint: mere is never heard in training
    child_cfg = tmp_path / "child.yaml"
    child_cfg.write_text(yaml.safe_dump(cfg))
    run = in_process.plan(ws, child_cfg)
    assert in_process.train_run(run, monkeypatch) == "finished"
    in_process.publish(ws, run)
    child = load_file(str(ws / "models" / "tiny-asr-child" / "model.safetensors"))
    mother = load_file(str(parent / "model.safetensors"))
    # With a vanishing learning rate the child is still its parent: every encoder tensor came from it.
    enc = [k for k in mother if not k.startswith("out.")]
    assert enc and all((child[k] - mother[k]).abs().max() < 1e-4 for k in enc)
    card = (ws / "models" / "tiny-asr-child" / "model_card.md").read_text(encoding="utf-8")
    lineage = _front(card)["hearthkit"]["parent"]
    assert lineage["name"] == "tiny-asr" and lineage["datasets"] == ["demo-korero"]
    assert lineage["manifest_sha256"] == _front((parent / "model_card.md").read_text())["hearthkit"]["manifest_sha256"]
    assert "## Parent model (transfer)" in card
    split = json.loads((ws / "runs" / "tiny-asr-child" / "split.json").read_text())
    manifest = json.loads((ws / "runs" / "tiny-asr-child" / "manifest.json").read_text())
    speakers = {e["item_id"]: e["speaker"] for e in manifest["included"]}
    assert {speakers[i] for i in split["test"]} == {"mere"} and "mere" not in {speakers[i] for i in split["train"]}


def test_transfer_from_a_missing_parent_is_one_clear_line(tiny_asr_model, tmp_path):
    from typer.testing import CliRunner

    from hearthkit.cli.main import app

    ws, _, cfg_path = tiny_asr_model
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["name"] = "tiny-asr-orphan"
    cfg["model"]["init_from"] = str(tmp_path / "nowhere")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(app, ["train", str(bad)], env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})
    assert res.exit_code == 2 and "not a published hearthkit model" in res.stderr  # refused at planning
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (ws / "runs" / "tiny-asr-orphan" / "run.json").exists()
