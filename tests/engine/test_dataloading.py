"""The DataLoader data path (issue 21, defect 2): workers prepare the same batches the training process would, read
every item through the governed reader (logged, hash-checked), and a stopped run with workers resumes bitwise exactly;
the stop and preemption flags travel in an asynchronous vote, not a blocking all-reduce per step.

Real parts throughout: the tiny espeak archive's workspace, planned runs, forked loader workers, a gloo group of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from hearthkit.engine import dataloading, stop
from hearthkit.engine.config import DataConfig, load_config

from .conftest import in_process_env


def _plan(engine_ws: Path, tiny_config, folder: Path, name: str, overrides: list[str], **train) -> Path:
    from hearthkit.catalog.db import Catalog
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace

    ws = open_workspace(engine_ws)
    catalog = Catalog.open(ws.db_url)
    try:
        cfg = load_config(tiny_config(folder, name, train=train, launch={"nproc": 1}), overrides)
        return plan_run(ws, catalog, cfg)[0]
    finally:
        catalog.close()


def test_workers_make_the_batches_the_training_process_would_and_log_every_read(engine_ws: Path, tiny_config,
                                                                                tmp_path: Path):
    """Batch K is a function of (seed, K, rank) alone: two forked workers give the batches made in-process, the
    trainer's RNG is not drawn from, and each worker's reads are in the access log (its own pid, manifest items)."""
    from hearthkit.engine.config import RunConfig
    from hearthkit.engine.sampler import StepSampler
    from hearthkit.engine.trainer import load_data
    from hearthkit.recipes import get_recipe

    run = _plan(engine_ws, tiny_config, tmp_path, "loader-batches", [], batch_size=3)
    spec = json.loads((run / "run.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    recipe = get_recipe("asr")
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    prep = recipe.load_prep(run / "prep")

    def batches(workers: int, log: str) -> list[dict]:
        data, _, _ = load_data(run, spec, cfg, recipe, mcfg, prep, 0)
        data.reader.access_log = run / "access" / log  # this test's reads, per loader
        sampler = StepSampler(len(data), 3, 0, 1, cfg.train.seed)
        steps = dataloading.StepBatches(data, sampler, recipe.collate, cfg.train.seed, 0)
        return list(dataloading.loader(steps, 2, 6, DataConfig(workers=workers, prefetch=2),
                                       torch.device("cpu"), workers))

    rng = torch.get_rng_state()
    inline, forked = batches(0, "inline.jsonl"), batches(2, "forked.jsonl")
    assert torch.equal(rng, torch.get_rng_state())  # dropout's stream in the trainer is untouched
    assert len(inline) == len(forked) == 4
    for a, b in zip(inline, forked, strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) if torch.is_tensor(a[k]) else a[k] == b[k] for k in a)  # n_frames: int
    included = json.loads((run / "manifest.json").read_text())["included"]
    manifest = {e["content_hash"]: e["item_id"] for e in included}  # the audio, and a sealed transcript's object
    manifest |= {e["meta"]["sealed_text"]: e["item_id"] for e in included if "sealed_text" in (e.get("meta") or {})}
    reads = [json.loads(line) for line in (run / "access" / "forked.jsonl").read_text().splitlines()]
    assert reads and all(manifest[r["content_hash"]] == r["item_id"] for r in reads)
    assert os.getpid() not in {r["pid"] for r in reads}  # read (decrypted, verified) in the workers themselves
    inline_reads = (run / "access" / "inline.jsonl").read_text().splitlines()
    assert {json.loads(r)["content_hash"] for r in inline_reads} <= {r["content_hash"] for r in reads}


def test_a_worker_reads_only_through_the_governed_reader(engine_ws: Path, tiny_config, tmp_path: Path):
    """An item the manifest does not include is refused inside the worker, and the refusal reaches the trainer."""
    from hearthkit.engine.config import RunConfig
    from hearthkit.engine.sampler import StepSampler
    from hearthkit.engine.trainer import load_data
    from hearthkit.recipes import get_recipe

    run = _plan(engine_ws, tiny_config, tmp_path, "loader-refused", [])
    spec = json.loads((run / "run.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    recipe = get_recipe("asr")
    data, _, _ = load_data(run, spec, cfg, recipe, recipe.ModelConfig.model_validate(cfg.model),
                           recipe.load_prep(run / "prep"), 0)
    data.entries = [{**e, "content_hash": "ab" * 32} for e in data.entries]  # digests outside the manifest
    steps = dataloading.StepBatches(data, StepSampler(len(data), 2, 0, 1, 0), recipe.collate, 0, 0)
    with pytest.raises(PermissionError, match="is not in this run's manifest"):
        next(iter(dataloading.loader(steps, 0, 2, DataConfig(workers=1), torch.device("cpu"), 1)))


def test_stopped_run_with_loader_workers_resumes_bitwise_and_votes_without_blocking(engine_ws: Path, tiny_config,
                                                                                    tmp_path: Path, monkeypatch):
    """The real loop (world of one) with two loader workers and grad_accum 2: stopped after step 3 and resumed, it
    ends with the weights of an uninterrupted run with the same workers and of one with none. The stop and
    preemption flags go out once per step in an asynchronous all-reduce; no blocking one is made per step."""
    from hearthkit.engine.trainer import train

    in_process_env(monkeypatch)
    monkeypatch.setenv("HEARTH_PREEMPT_SIGNAL", "SIGUSR2")  # the preemption flag is voted on too
    calls: list[bool] = []
    real = dist.all_reduce

    def all_reduce(*args, **kwargs):
        calls.append(bool(kwargs.get("async_op")))
        return real(*args, **kwargs)

    monkeypatch.setattr(dist, "all_reduce", all_reduce)
    train_cfg = {"grad_accum": 2, "log_every": 6}
    runs = {name: _plan(engine_ws, tiny_config, tmp_path, name, [f"data.workers={w}"], **train_cfg)
            for name, w in (("w2-whole", 2), ("w2-stopped", 2), ("w0-whole", 0))}
    assert train(runs["w2-whole"], []) == "finished"
    assert calls.count(True) == 6 + 1 and calls.count(False) == 2  # a vote per step (+1 cast before step 1);
    # the two blocking ones are the metrics report at step 6 (log_every). Before: two blocking flags per step.
    monkeypatch.setenv("HEARTH_TEST_STOP", "0:3")
    assert train(runs["w2-stopped"], []) == "stopped"
    stop.clear()  # a fresh worker process starts without the request
    monkeypatch.delenv("HEARTH_TEST_STOP")
    assert json.loads((runs["w2-stopped"] / "state.json").read_text()) == {"status": "stopped", "step": 3}
    assert train(runs["w2-stopped"], []) == "finished"
    log = (runs["w2-stopped"] / "logs/rank0.log").read_text()
    assert "data: 2 loader workers" in log and "resumed from checkpoint step_00000003 at step 3" in log
    assert train(runs["w0-whole"], []) == "finished"
    final = {name: load_file(str(run / "final/model.safetensors")) for name, run in runs.items()}
    for name in ("w2-stopped", "w0-whole"):
        differ = [k for k in final["w2-whole"] if not torch.equal(final["w2-whole"][k], final[name][k])]
        assert final[name].keys() == final["w2-whole"].keys() and not differ, f"{name}: weights differ in {differ}"


def test_workers_auto_uses_none_on_cpu_and_config_errors_name_the_field(tmp_path: Path, tiny_config):
    assert dataloading.resolve_workers(DataConfig(), torch.device("cpu"), 2) == 0
    assert dataloading.resolve_workers(DataConfig(workers=3), torch.device("cpu"), 2) == 3
    from hearthkit.errors import HearthError

    with pytest.raises(HearthError, match=r"field data.workers"):
        load_config(tiny_config(tmp_path, "x"), ["data.workers=-1"])
    with pytest.raises(HearthError, match=r"field data.prefetch"):
        load_config(tiny_config(tmp_path, "x"), ["data.prefetch=0"])
