"""End to end under the real torchrun, through the `hearth` CLI, on the tiny espeak archive (CPU, gloo, 2 workers).

Exact resume: run A trains 6 steps; run B has rank 1 SIGKILLed after step 3 and torchrun restarts the group;
run C's process group (CLI and torchrun) is SIGKILLed while writing checkpoint 4, then re-launched with the
same command.
All three end with bitwise-identical weights. Faults come from test-only hooks read by the worker:
HEARTH_TEST_KILL (a real SIGKILL of the rank by itself), HEARTH_TEST_CHECKPOINT_PAUSE (a pause inside the write
window of one checkpoint, so the kill lands mid-write) and HEARTH_TEST_HANG (a rank that stops answering).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from .conftest import alive

pytestmark = pytest.mark.slow


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "final" / "model.safetensors"))


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"weights differ in {differ}"


@pytest.fixture(scope="module")
def run_a(engine_ws: Path, tiny_config, cli, tmp_path_factory) -> Path:
    """Run A: 6 uninterrupted steps, tracked in MLflow."""
    cfg = tiny_config(tmp_path_factory.mktemp("a"), "e2e-a", train={"mlflow": True})
    proc = cli("train", str(cfg), ws=engine_ws)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "step 6/6" in proc.stdout
    return engine_ws / "runs" / "e2e-a"


def test_killed_worker_is_restarted_by_torchrun_and_resumes_exactly(run_a, engine_ws, tiny_config, cli, tmp_path):
    cfg = tiny_config(tmp_path, "e2e-b")
    proc = cli("train", str(cfg), "--max-restarts", "1", ws=engine_ws, env={"HEARTH_TEST_KILL": "1:3"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_b = engine_ws / "runs" / "e2e-b"
    rank1 = (run_b / "logs" / "rank1.log").read_text()
    assert "test fault: SIGKILL after step 3" in rank1 and "start attempt 1 rank 1" in rank1
    assert "resumed from checkpoint step_00000002 at step 2" in proc.stdout
    assert_identical(weights(run_a), weights(run_b))


def test_job_killed_mid_checkpoint_keeps_the_previous_one_and_relaunch_resumes_exactly(
        run_a, engine_ws, tiny_config, cli, cli_start, tmp_path):
    cfg = tiny_config(tmp_path, "e2e-c")
    run_c = engine_ws / "runs" / "e2e-c"
    writing = run_c / "checkpoints" / ".tmp-step_00000004"
    out = (tmp_path / "c.out").open("w")
    proc = cli_start("train", str(cfg), ws=engine_ws, env={"HEARTH_TEST_CHECKPOINT_PAUSE": "4:60"}, stdout=out)
    deadline = time.time() + 240
    # Both ranks have written their shards and state into the .tmp folder; nothing is committed yet.
    while not ((writing / "rank0.pt").exists() and (writing / "rank1.pt").exists()):
        assert proc.poll() is None and time.time() < deadline, (tmp_path / "c.out").read_text()
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job: CLI and torchrun; workers die with their agent
    proc.wait(30)
    assert proc.returncode == -9
    workers = [int(p) for p in re.findall(r"start attempt 0 rank \d host \S+ pid (\d+)",
                                          "".join(f.read_text() for f in (run_c / "logs").glob("rank*.log")))]
    assert len(workers) == 2
    deadline = time.time() + 30
    while any(alive(p) for p in workers):  # no orphan may go on writing into the run folder
        assert time.time() < deadline, "a worker outlived its killed job"
        time.sleep(0.1)
    assert any(writing.glob("*.distcp")) and not (writing / "meta.json").exists()  # a half-made checkpoint
    assert [p.name for p in (run_c / "checkpoints").glob("step_*")] == ["step_00000002"]
    assert not (run_c / "final").exists()

    again = cli("train", str(cfg), ws=engine_ws)  # the same command, as a person would re-run it
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed from checkpoint step_00000002 at step 2" in again.stdout
    assert not writing.exists()
    assert_identical(weights(run_a), weights(run_c))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # mlflow's store on SQLAlchemy 2.1 (noload)
def test_export_writes_safetensors_and_card_and_runs_lists_mlflow(run_a, engine_ws, cli, tmp_path):
    dest = tmp_path / "shipped"
    proc = cli("export", "e2e-a", str(dest), ws=engine_ws)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_identical(weights(run_a), load_file(str(dest / "model.safetensors")))
    card = (dest / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["model_name"] == "e2e-a" and len(front["hearthkit"]["manifest_sha256"]) == 64
    assert (dest / "prep" / "tokenizer.json").is_file() and (dest / "config.json").is_file()

    again = cli("export", "e2e-a", str(dest), ws=engine_ws)
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    missing = cli("export", "nope", str(tmp_path / "x"), ws=engine_ws)
    assert missing.returncode == 2 and "no model named 'nope'" in missing.stderr

    runs = cli("runs", ws=engine_ws)
    assert runs.returncode == 0, runs.stderr
    row = next(line for line in runs.stdout.splitlines() if "e2e-a" in line)
    run_id = (run_a / "mlflow_run_id").read_text().strip()
    assert "finished" in row and "6/6" in row and run_id in row
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{engine_ws / 'mlflow.db'}")
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]
    assert client.get_run(run_id).data.params["train.parallel"] == "ddp"


def test_fsdp2_dead_peer_fails_fast_naming_it_then_resumes_from_dcp(engine_ws, tiny_config, cli, tmp_path):
    """FSDP2 (sharded weights, gloo on CPU) with gradient accumulation: rank 1 stops answering after step 3;
    rank 0 gives up after the 10 s collective timeout, and the error names rank 1, its host and its last lines.
    Re-running resumes from the sharded DCP checkpoint of step 2 and finishes."""
    cfg = tiny_config(tmp_path, "e2e-fsdp", train={"parallel": "fsdp2", "grad_accum": 2},
                      launch={"timeout_s": 10})  # short, yet above any stall a loaded 2-core CI has
    t0 = time.time()
    proc = cli("train", str(cfg), ws=engine_ws, env={"HEARTH_TEST_HANG": "1:3"}, timeout=240)
    took = time.time() - t0
    assert proc.returncode == 2, proc.stdout + proc.stderr
    error = proc.stderr.strip().splitlines()[-1]
    assert re.search(rf"rank 1 on host {re.escape(socket.gethostname())} stopped responding after step 3; "
                     r"rank 0 gave up waiting for it after the 10 s collective timeout", error), error
    assert "test fault: hanging after step 3" in proc.stdout + proc.stderr  # rank 1's last log lines are shown
    print(f"dead peer: failed {took:.1f} s after launch (timeout 10 s)")

    run = engine_ws / "runs" / "e2e-fsdp"
    assert len(list((run / "checkpoints" / "step_00000002").glob("*.distcp"))) == 2  # one shard file per rank
    again = cli("train", str(cfg), ws=engine_ws)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed from checkpoint step_00000002 at step 2" in again.stdout and "(fsdp2, cpu)" in again.stdout
    final = weights(run)
    assert final["rnn.weight_ih_l0"].shape == (48, 16)  # gathered whole, not a shard
    assert all(torch.isfinite(v).all() for v in final.values())


def test_validation_loss_on_held_out_training_sentences(run_a, engine_ws, tiny_config, cli, tmp_path):
    from hearthkit.catalog.db import Catalog
    from hearthkit.engine.config import load_config
    from hearthkit.launch.plan import governed_manifest
    from hearthkit.workspace import open_workspace

    cfg = tiny_config(tmp_path, "e2e-valid")
    catalog = Catalog.open(open_workspace(engine_ws).db_url)
    included = governed_manifest(catalog, load_config(cfg)).included
    catalog.close()
    held_out = sorted({e["speaker"] for e in included})[0]
    # The test side is one named speaker (a fixed list): the validation items are grouped by sentence instead,
    # since every training item shares few values of `speaker`.
    data = yaml.safe_load(cfg.read_text())
    data["split"] = {"by": "speaker", "test_values": [held_out], "valid_fraction": 0.3}
    data["train"].update(average_last=2, keep_last=2)  # the shipped weights average steps 4 and 6
    cfg.write_text(yaml.safe_dump(data))
    proc = cli("train", str(cfg), "--no-eval", ws=engine_ws)  # the test items stay unread while comparing
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not evaluated (--no-eval)" in proc.stdout
    run = engine_ws / "runs" / "e2e-valid"
    assert not (run / "access" / "eval.jsonl").exists()
    assert json.loads((engine_ws / "models" / "e2e-valid" / "evaluation.json").read_text())["rows"] == []
    unscored = (engine_ws / "models" / "e2e-valid" / "model_card.md").read_text(encoding="utf-8")
    assert "Not evaluated yet: `hearth eval e2e-valid`" in unscored and "| by | group |" not in unscored
    split = json.loads((run / "split.json").read_text())
    assert split["valid_by"] == "text"
    entry = {e["item_id"]: e for e in included}
    assert {entry[i]["speaker"] for i in split["test"]} == {held_out}
    parts = {k: {entry[i]["meta"]["sentence"] for i in split[k]} for k in ("train", "valid")}
    # No sentence (spoken by several voices) is on both sides; validation comes from the training side.
    assert parts["valid"] and not parts["valid"] & parts["train"]
    assert held_out not in {entry[i]["speaker"] for i in split["valid"]}
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    valid = [(r["step"], r["valid_loss"]) for r in records if "valid_loss" in r]
    assert [s for s, _ in valid] == [2, 4, 6] and all(math.isfinite(v) and v > 0 for _, v in valid)
    assert f"validation loss at step 6: {valid[-1][1]:.4f}" in proc.stdout
    averaged = [r for r in records if "valid_loss_averaged" in r]
    assert [(r["step"], r["averaged_checkpoints"]) for r in averaged] == [(6, 2)]
    assert math.isfinite(averaged[0]["valid_loss_averaged"]) and averaged[0]["valid_loss_averaged"] > 0
    assert f"validation loss of the 2 averaged checkpoints: {averaged[0]['valid_loss_averaged']:.4f}" in proc.stdout
    # Both ranks read their share of the validation items, and only those, through the governed reader.
    read = {json.loads(line)["item_id"] for f in (run / "access").glob("rank*-valid.jsonl")
            for line in f.read_text().splitlines()}
    assert read == set(split["valid"])

    # Decoding settings are chosen on the validation items: evaluated there, the model card is left alone.
    card = (engine_ws / "models" / "e2e-valid" / "evaluation.json").read_text()
    ev = cli("eval", "e2e-valid", "--split", "valid", "--set", "decode.beam=2", "--by", "speaker", ws=engine_ws)
    assert ev.returncode == 0, ev.stdout + ev.stderr
    result = json.loads((run / "eval-valid-set.json").read_text())
    assert result["set"] == ["decode.beam=2"]
    assert next(r for r in result["rows"] if r["by"] == "overall")["n"] == len(split["valid"])
    read = {json.loads(line)["item_id"] for line in (run / "access" / "eval-valid.jsonl").read_text().splitlines()}
    assert read == set(split["valid"])
    assert (engine_ws / "models" / "e2e-valid" / "evaluation.json").read_text() == card
    assert not (run / "access" / "eval.jsonl").exists()
    # Scored on its test items later, the card gets its rows.
    test = cli("eval", "e2e-valid", "--by", "speaker", ws=engine_ws)
    assert test.returncode == 0, test.stdout + test.stderr
    rows = json.loads((engine_ws / "models" / "e2e-valid" / "evaluation.json").read_text())["rows"]
    assert {(r["by"], r["group"]) for r in rows} == {("overall", "all"), ("speaker", held_out)}
    assert "Not evaluated yet" not in (engine_ws / "models" / "e2e-valid" / "model_card.md").read_text()
    bad = cli("eval", "e2e-valid", "--split", "valid", "--set", "decode.beam=zero", ws=engine_ws)
    assert bad.returncode != 0 and "model.decode.beam" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
    # A run without validation items says so in one line.
    none = cli("eval", "e2e-a", "--split", "valid", ws=engine_ws)
    assert none.returncode != 0 and "held out no validation items" in none.stdout + none.stderr
