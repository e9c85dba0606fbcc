"""Engine components in one process (a world of one, real gloo group): schedules, checkpoints, stop, metrics,
failure diagnosis, and the training loop itself stopped and resumed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from hearthkit.engine import checkpoint, stop
from hearthkit.engine.config import TrainConfig, load_config
from hearthkit.engine.faults import diagnose, torchrun_failures
from hearthkit.engine.metrics import Meter, format_line
from hearthkit.engine.optim import build_optimizer, build_scheduler, lr_factor
from hearthkit.errors import HearthError

from .conftest import in_process_env


@pytest.fixture
def world1(tmp_path: Path):
    """A real gloo process group of one rank, torn down after the test."""
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_schedules_warm_up_then_take_their_shape():
    base = {"steps": 100, "warmup": 10, "min_lr_ratio": 0.1}
    cos = lr_factor(TrainConfig(schedule="cosine", **base))
    lin = lr_factor(TrainConfig(schedule="linear", **base))
    const = lr_factor(TrainConfig(schedule="constant", **base))
    for f in (cos, lin, const):
        assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)  # linear warm-up to the peak
    assert cos(10) == pytest.approx(1.0) and cos(100) == pytest.approx(0.1) and cos(55) == pytest.approx(0.55)
    assert lin(10) == pytest.approx(1.0) and lin(100) == pytest.approx(0.1) and lin(55) == pytest.approx(0.55)
    assert cos(30) > lin(30)  # cosine stays high longer
    assert all(const(s) == 1.0 for s in range(10, 100))


def test_config_names_a_bad_engine_field(tmp_path: Path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: r\nrecipe: asr\nrequest: {purpose: research, requester: x, collections: [c]}\n")
    with pytest.raises(HearthError, match=r"field train\.parallel"):
        load_config(cfg, ["train.parallel=zero3"])
    assert load_config(cfg, ["train.parallel=fsdp2"]).train.parallel == "fsdp2"
    assert load_config(cfg).launch.timeout_s == 60  # short by default: a dead peer fails in a minute


def test_run_config_refuses_settings_that_cannot_hold_together(tmp_path: Path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("name: r\nrecipe: asr\nrequest: {purpose: research, requester: me, collections: [c]}\n")
    with pytest.raises(HearthError, match=r"field train: .*average_last 5 needs keep_last >= 5 \(now 2\)"):
        load_config(cfg, ["train.average_last=5"])
    assert load_config(cfg, ["train.average_last=5", "train.keep_last=5"]).train.average_last == 5
    with pytest.raises(HearthError, match=r"split.valid_fraction needs train.parallel: ddp"):
        load_config(cfg, ["split.valid_fraction=0.1", "train.parallel=fsdp2"])
    assert load_config(cfg, ["split.valid_fraction=0.1"]).split.valid_fraction == 0.1


def test_optimizer_skips_decay_on_biases_and_is_fused_on_cpu_ddp():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = build_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decays = {p.dim(): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decays == {2: 0.1, 1: 0.0}
    assert opt.defaults["fused"] is True
    sharded = build_optimizer(model, TrainConfig(parallel="fsdp2"), torch.device("cpu"))
    assert not sharded.defaults["fused"]


def _tiny_training(steps: int):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Dropout(0.2), torch.nn.Linear(16, 1))
    train = TrainConfig(steps=10, warmup=2, lr=0.01)
    opt = build_optimizer(model, train, torch.device("cpu"))
    sched = build_scheduler(opt, train)
    for _ in range(steps):
        loss = model(torch.randn(4, 8)).pow(2).mean()  # data and dropout both draw from the RNG
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
    return model, opt, sched


def test_checkpoint_round_trip_keeps_last_k_and_ignores_partial_writes(world1, tmp_path: Path):
    root = tmp_path / "ckpt"
    model, opt, sched = _tiny_training(3)
    state = checkpoint.ModelAndOptimizer(model, opt)
    for step in (1, 2, 3):
        checkpoint.save(root, step, state, {"step": step, "scheduler": sched.state_dict(),
                                            "rng": checkpoint.rng_state()}, keep_last=2)
    assert [p.name for p in checkpoint.checkpoints(root)] == ["step_00000002", "step_00000003"]
    # A crash mid-write leaves a .tmp folder without meta.json: never taken as a checkpoint.
    partial = root / ".tmp-step_00000004"
    partial.mkdir()
    (partial / "__0_0.distcp").write_bytes(b"half")
    assert checkpoint.latest(root).name == "step_00000003"

    expected = [p.detach().clone() for p in model.parameters()]
    next_loss = _continue(model, opt, sched)
    fresh, fresh_opt, fresh_sched = _tiny_training(0)  # different weights, empty optimizer
    loop = checkpoint.load(checkpoint.latest(root), checkpoint.ModelAndOptimizer(fresh, fresh_opt))
    fresh_sched.load_state_dict(loop["scheduler"])
    checkpoint.set_rng_state(loop["rng"])
    assert all(torch.equal(a, b) for a, b in zip(expected, fresh.parameters(), strict=True))
    assert _continue(fresh, fresh_opt, fresh_sched) == next_loss  # optimizer moments, schedule and RNG restored

    checkpoint.save(root, 5, state, {"step": 5}, keep_last=2)
    assert not partial.exists()  # the next save clears what a crash left


def _continue(model, opt, sched) -> float:
    loss = model(torch.randn(4, 8)).pow(2).mean()
    loss.backward()
    opt.step()
    sched.step()
    return float(model(torch.ones(1, 8)).sum().detach())


def test_stop_request_reaches_the_group(world1):
    stop.clear()
    assert stop.should_stop(None) is False
    stop.request()
    assert stop.should_stop(None) is True
    stop.clear()


def test_meter_reports_throughput_mfu_and_memory(world1, tmp_path: Path):
    meter = Meter(tmp_path, 10, torch.device("cpu"), flops_per_sample=1e9, peak=1.0, tracker=None)
    meter.add(torch.tensor(2.0), {"samples": 4.0, "tokens": 400.0})
    meter.add(torch.tensor(4.0), {"samples": 4.0, "tokens": 400.0})
    time.sleep(0.05)
    rec = meter.report(2, 1e-3)
    assert rec["loss"] == pytest.approx(3.0)
    assert rec["tokens_per_s"] == pytest.approx(100 * rec["samples_per_s"])
    assert rec["mfu"] == pytest.approx(1e9 * rec["samples_per_s"] / 1e12)
    assert rec["peak_mem_gib"] > 0
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["step"] == 2
    assert format_line(rec, "tokens").startswith("step 2/10 loss 3.0000")


def test_diagnose_names_the_killed_rank_and_shows_its_log(tmp_path: Path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "rank0.log").write_text("10:00:00 start attempt 0 rank 0 host nodeA pid 1\n10:00:01 step 1 done\n"
                                    "10:00:01 step 2 done\n")
    (logs / "rank1.log").write_text("10:00:00 start attempt 0 rank 1 host nodeB pid 2\n10:00:01 step 1 done\n")
    (logs / "failure-rank0.json").write_text(json.dumps({
        "rank": 0, "host": "nodeA", "step": 2, "time": time.time(), "timeout": False,
        "error": "RuntimeError: Connection reset by peer"}))
    report = ["Root Cause (first observed failure):", "[0]:", "  time      : 2026-11-27_10:00:02",
              "  host      : localhost", "  rank      : 1 (local_rank: 1)", "  exitcode  : -9 (pid: 2)"]
    assert torchrun_failures(report) == [{"host": "localhost", "rank": 1, "exitcode": -9}]
    summary, lines = diagnose(tmp_path, time.time() - 60, report, 60)
    assert summary == "rank 1 on host nodeB was killed by signal SIGKILL after step 1"
    assert "step 1 done" in lines[-2] and "rank 0 on nodeA failed after step 2" in lines[-1]


def test_training_loop_stops_cleanly_and_resumes_exactly(engine_ws: Path, tiny_config, tmp_path: Path,
                                                         monkeypatch):
    """The real loop in this process (world of one): a requested stop checkpoints and exits; the next start
    resumes and ends with the weights of a run never stopped (accumulation, dropout, SpecAugment included)."""
    from hearthkit.catalog.db import Catalog
    from hearthkit.engine.trainer import train
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace

    ws = open_workspace(engine_ws)
    catalog = Catalog.open(ws.db_url)
    in_process_env(monkeypatch)
    dirs = {}
    for name in ("inproc-whole", "inproc-stopped"):
        cfg = load_config(tiny_config(tmp_path, name, train={"grad_accum": 2}, launch={"nproc": 1}))
        dirs[name] = plan_run(ws, catalog, cfg)[0]
    catalog.close()

    assert train(dirs["inproc-whole"], []) == "finished"
    monkeypatch.setenv("HEARTH_TEST_STOP", "0:3")
    assert train(dirs["inproc-stopped"], []) == "stopped"
    stop.clear()  # a fresh worker process starts without the request
    monkeypatch.delenv("HEARTH_TEST_STOP")
    assert json.loads((dirs["inproc-stopped"] / "state.json").read_text()) == {"status": "stopped", "step": 3}
    assert checkpoint.latest(dirs["inproc-stopped"] / "checkpoints").name == "step_00000003"
    assert not (dirs["inproc-stopped"] / "final").exists()
    assert train(dirs["inproc-stopped"], []) == "finished"
    assert "resumed from checkpoint step_00000003 at step 3" in (dirs["inproc-stopped"] / "logs/rank0.log").read_text()
    a = load_file(str(dirs["inproc-whole"] / "final/model.safetensors"))
    b = load_file(str(dirs["inproc-stopped"] / "final/model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_validation_split_field_and_an_empty_validation_side(engine_ws: Path, tiny_config, tmp_path: Path):
    """Validation groups by `by` unless the test side is a fixed list; holding out nothing is one clear error,
    and the run is not planned."""
    from hearthkit.catalog.db import Catalog
    from hearthkit.engine.config import SplitConfig
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace

    assert SplitConfig(by="speaker").validation_field() == "speaker"
    assert SplitConfig(by="split", test_values=["dev"]).validation_field() == "text"
    assert SplitConfig(by="split", test_values=["dev"], valid_by="speaker").validation_field() == "speaker"
    ws = open_workspace(engine_ws)
    catalog = Catalog.open(ws.db_url)
    # A field the items lack gives every item the same value: one group, here not drawn for validation.
    cfg = load_config(tiny_config(tmp_path, "valid-none"), ["split.valid_fraction=0.01", "split.valid_by=nothing"])
    with pytest.raises(HearthError, match=r"split.valid_fraction 0.01 held out no training items .*'nothing'"):
        plan_run(ws, catalog, cfg)
    catalog.close()
    # (Its access log may stay: sealed transcripts were read for the split, and those reads are kept on record.)
    assert not any((ws.run_dir("valid-none") / f).exists() for f in ("run.json", "split.json", "manifest.json"))
