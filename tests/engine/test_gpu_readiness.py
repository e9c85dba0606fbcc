"""The GPU path proven on CPU (issue 21): NCCL's device binding emulated, durable and agreed checkpoints, refused
resumes, separate timeouts, atomic error files, averaging over the schedule's tail, deterministic mode.

No GPU exists here. NCCL binds its group to CUDA, so a CPU tensor in one of its collectives fails; a gloo group
created with the backend string "cuda:gloo" is bound the same way and fails the same way ("No backend type
associated with device type cpu"), which is how these tests stand in for NCCL.
"""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file

from hearthkit.engine import checkpoint, parallel, stop
from hearthkit.engine.config import LaunchConfig, TrainConfig, load_config
from hearthkit.engine.faults import AtomicErrorHandler, diagnose, write_atomic
from hearthkit.errors import HearthError

from .conftest import in_process_env

SRC = Path(__file__).resolve().parents[2] / "src" / "hearthkit"
COLLECTIVES = {"all_reduce", "broadcast", "all_gather", "all_gather_object", "broadcast_object_list", "barrier",
               "reduce_scatter", "reduce_scatter_tensor", "all_gather_into_tensor", "gather", "scatter", "reduce",
               "all_to_all", "gather_object", "scatter_object_list", "all_reduce_coalesced", "monitored_barrier"}


def test_every_collective_in_engine_and_recipes_names_its_group():
    """A collective on the default group is one on NCCL's CUDA-bound group: CPU tensors there fail on a GPU cluster.
    Every direct call names a group (a gloo side group for CPU-side bookkeeping), and DCP a process_group."""
    bare, found = [], 0
    for path in [*sorted((SRC / "engine").glob("*.py")), *sorted((SRC / "recipes").rglob("*.py"))]:
        for fn in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute) \
                        or not isinstance(node.func.value, ast.Name):
                    continue
                owner, op = node.func.value.id, node.func.attr
                kwargs = {k.arg for k in node.keywords}
                if owner == "dist" and op in COLLECTIVES:
                    found += 1
                    if "group" not in kwargs:
                        bare.append(f"{path.name} {fn.name}: dist.{op}")
                if owner == "dcp" and op in {"save", "load"}:
                    found += 1
                    if "process_group" not in kwargs:
                        bare.append(f"{path.name} {fn.name}: dcp.{op}")
    assert found >= 10  # the walk sees them: metrics, validation, flags, checkpoints, averaging, barriers
    # The one exception: checkpoint._barrier without side groups, the path of a gloo world of one in tests.
    assert bare == ["checkpoint.py _barrier: dist.barrier"], bare


@pytest.fixture
def emulated_nccl(tmp_path: Path):
    """A world of one whose default group is bound to CUDA only, as NCCL's is (see the module docstring)."""
    dist.init_process_group("cuda:gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_bookkeeping_collectives_run_on_a_cuda_bound_default_group(emulated_nccl, tmp_path: Path):
    from hearthkit.engine.metrics import Meter
    from hearthkit.engine.preempt import PreemptWatch

    with pytest.raises(RuntimeError, match="No backend type associated with device type cpu"):
        dist.all_reduce(torch.zeros(1))  # the emulation holds: what broke the first logged step on GPUs
    sides = parallel.side_groups(LaunchConfig())
    meter = Meter(tmp_path, 4, torch.device("cpu"), None, None, None, sides.host)
    meter.add(torch.tensor(2.0), {"samples": 2.0})
    assert meter.report(1, 1e-3)["loss"] == pytest.approx(2.0)
    stop.clear()
    assert stop.should_stop(sides.host) is False
    assert PreemptWatch("SIGUSR2").should_stop(sides.host) is False
    sides.barrier(sides.final, 5, "end of training")


def _fsync_recorder(monkeypatch) -> set[int]:
    """Record the inode of everything fsynced in this process (files and folders), then fsync for real."""
    seen: set[int] = set()
    real = os.fsync

    def fsync(fd: int) -> None:
        seen.add(os.fstat(fd).st_ino)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def _plan(engine_ws: Path, tiny_config, folder: Path, name: str, overrides: list[str], **train) -> Path:
    from hearthkit.catalog.db import Catalog
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace

    ws = open_workspace(engine_ws)
    catalog = Catalog.open(ws.db_url)
    try:
        return plan_run(ws, catalog, load_config(tiny_config(folder, name, train=train, launch={"nproc": 1}),
                                                 overrides))[0]
    finally:
        catalog.close()


def test_the_real_loop_under_emulated_nccl_stops_resumes_and_commits_durably(engine_ws: Path, tiny_config,
                                                                            tmp_path: Path, monkeypatch):
    """The whole worker (metrics, validation, stop and preemption flags, checkpoints, rank 0's choice on resume,
    averaging, final weights, last barrier) on a CUDA-bound default group; what it commits is fsynced."""
    from hearthkit.engine.trainer import train

    in_process_env(monkeypatch)
    monkeypatch.setenv(parallel.TEST_BACKEND_ENV, "cuda:gloo")
    monkeypatch.setenv("HEARTH_PREEMPT_SIGNAL", "SIGUSR2")  # the preemption flag's all-reduce runs every step
    synced = _fsync_recorder(monkeypatch)
    run = _plan(engine_ws, tiny_config, tmp_path, "emulated-nccl", ["split.valid_fraction=0.3"],
                average_last=2, keep_last=2)
    monkeypatch.setenv("HEARTH_TEST_STOP", "0:3")
    assert train(run, []) == "stopped"
    stop.clear()
    monkeypatch.delenv("HEARTH_TEST_STOP")
    assert train(run, []) == "finished"
    log = (run / "logs/rank0.log").read_text()
    assert "process group: cuda:gloo" in log  # the emulation reached the worker
    assert "resumed from checkpoint step_00000003 at step 3" in log
    assert "averaged the weights of 2 checkpoints: step_00000004, step_00000006" in log
    assert "warning: train.average_last 2 averages the checkpoints of steps 4, 6" in log  # 4 < 0.8 x 6
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("valid_loss_averaged" in r for r in records) and any("valid_loss" in r for r in records)
    assert load_file(str(run / "final/model.safetensors"))
    last = checkpoint.latest(run / "checkpoints")
    for path in (run / "state.json", run / "final/model.safetensors", run / "final", last / "meta.json", last,
                 run / "checkpoints", run):
        assert path.stat().st_ino in synced, f"{path} was not fsynced"


def test_resume_with_a_changed_seed_or_batch_size_is_refused_unless_allowed(engine_ws: Path, tiny_config,
                                                                            tmp_path: Path, monkeypatch):
    from hearthkit.engine.trainer import train

    in_process_env(monkeypatch)
    run = _plan(engine_ws, tiny_config, tmp_path, "changed", [])
    monkeypatch.setenv("HEARTH_TEST_STOP", "0:2")
    assert train(run, []) == "stopped"
    stop.clear()
    monkeypatch.delenv("HEARTH_TEST_STOP")
    for field, value in (("seed", 8), ("batch_size", 3)):
        _plan(engine_ws, tiny_config, tmp_path, "changed", [f"train.{field}={value}"])  # re-plans: run.json updated
        with pytest.raises(HearthError, match=rf"train\.{field} is {value} but the run was trained with "
                                              rf".*train.allow_change=\[{field}\]"):
            train(run, [])
        dist.destroy_process_group()  # the refused worker exits; this test process carries on
    _plan(engine_ws, tiny_config, tmp_path, "changed", ["train.seed=8", "train.allow_change=[seed]"])
    assert train(run, []) == "finished"
    decided = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()
               if "resume_changed" in line]
    assert [(d["resume_changed"], d["old"], d["new"], d["allowed_by"]) for d in decided] == \
        [("seed", 7, 8, "train.allow_change")]
    with pytest.raises(HearthError, match=r"field train.allow_change.0"):
        load_config(tiny_config(tmp_path, "x"), ["train.allow_change=[lr]"])


def test_an_op_without_a_deterministic_kernel_is_refused_in_one_line(engine_ws: Path, tiny_config, tmp_path: Path,
                                                                    monkeypatch):
    """CTC loss backward has no deterministic CUDA kernel; on CPU it has one, so torch's own alert stands in."""
    from torch._prims_common import alert_not_deterministic

    from hearthkit.engine.trainer import train
    from hearthkit.recipes import get_recipe

    in_process_env(monkeypatch)
    run = _plan(engine_ws, tiny_config, tmp_path, "determined", [], deterministic=True)
    recipe = type(get_recipe("asr"))
    real = recipe.loss

    def loss_on_cuda(self, model, batch):
        out = real(self, model, batch)
        alert_not_deterministic("ctc_loss_backward_gpu")  # what CUDA's CTC backward raises under the setting
        return out

    monkeypatch.setattr(recipe, "loss", loss_on_cuda)
    try:
        with pytest.raises(HearthError) as err:
            train(run, [])
        assert str(err.value) == ("train.deterministic: ctc_loss_backward_gpu has no deterministic kernel on this "
                                  "device; set train.deterministic: false (a resumed run then agrees in its loss "
                                  "curve, not bitwise)")
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        dist.destroy_process_group()
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def test_timeouts_are_separate_cluster_sized_and_the_warmup_one_gives_way(tmp_path: Path):
    launch = LaunchConfig()
    assert (launch.timeout_s, launch.warmup_timeout_s, launch.checkpoint_timeout_s, launch.final_timeout_s) == \
        (60, 1800, 1800, 1800)
    # The group as init_distributed starts it: with the warm-up timeout.
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "s"), 1), rank=0, world_size=1,
                            timeout=timedelta(seconds=launch.warmup_timeout_s))
    try:
        backend = dist.group.WORLD._get_backend(torch.device("cpu"))
        parallel.end_warmup(LaunchConfig(timeout_s=7))
        assert backend.options._timeout == timedelta(seconds=7)
        sides = parallel.side_groups(LaunchConfig(timeout_s=7, checkpoint_timeout_s=11, final_timeout_s=13))
        assert [g._get_backend(torch.device("cpu")).options._timeout.seconds
                for g in (sides.host, sides.files, sides.final)] == [7, 11, 13]
    finally:
        dist.destroy_process_group()


def _stale_listing_rank(rank: int, root: str, store: str, out: str) -> None:
    """One rank of a 2-rank gloo group: write two checkpoints together; rank 1's listing then misses the newest
    (a per-node NFS attribute cache); resume; rank 0 also waits at a checkpoint barrier rank 1 never reaches."""
    torch.manual_seed(0)
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2,
                            timeout=timedelta(seconds=30))
    sides = parallel.side_groups(LaunchConfig(timeout_s=30, checkpoint_timeout_s=30))
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    state = checkpoint.ModelAndOptimizer(model, opt)
    for step in (1, 2):
        checkpoint.save(Path(root), step, state, {"step": step, "scheduler": sched.state_dict(),
                                                  "rng": checkpoint.rng_state()}, 3, sides)
    if rank == 1:
        listing = checkpoint.checkpoints
        checkpoint.checkpoints = lambda r: listing(r)[:-1]  # noqa: E731 - this rank's stale view
    step, path, _ = checkpoint.resume(Path(root), state, sched, sides)
    result = {"step": step, "path": path.name}
    if rank == 0:
        t0 = time.monotonic()
        try:
            sides.barrier(sides.files, 2, "checkpoint 3 (launch.checkpoint_timeout_s)")
        except RuntimeError as exc:
            result["barrier"] = str(exc)
        result["waited"] = time.monotonic() - t0
    else:
        time.sleep(4)  # never reaches the barrier in time
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    os._exit(0)  # no teardown: rank 0's group saw a failed barrier


def test_rank0_chooses_the_checkpoint_and_a_missing_rank_names_the_checkpoint_timeout(tmp_path: Path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_stale_listing_rank, args=(r, str(tmp_path / "ckpt"), str(tmp_path / "store"),
                                                           str(tmp_path))) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(90)
        if p.is_alive():
            p.kill()
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [(r["step"], r["path"]) for r in results] == [(2, "step_00000002")] * 2  # rank 1 did not see it listed
    assert results[0]["barrier"].startswith("checkpoint 3 (launch.checkpoint_timeout_s): a rank did not arrive "
                                            "within 2 s")
    assert "1" in results[0]["barrier"] and results[0]["waited"] < 10


def test_failure_records_and_torchrun_error_files_are_whole_or_absent(tmp_path: Path, monkeypatch):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "failure-rank1.json").write_text('{"rank": 1, "host": "nodeB", "st')  # killed mid-write (older code)
    write_atomic(logs / "failure-rank0.json", json.dumps({
        "rank": 0, "host": "nodeA", "step": 3, "time": time.time(), "timeout": False,
        "error": "RuntimeError: [/opt/gloo/transport/tcp/pair.cc:534] Connection closed by peer"}))
    summary, _ = diagnose(tmp_path, time.time() - 60, [], 60)
    assert summary.startswith("rank 0 on host nodeA RuntimeError: [/opt/gloo")

    target = tmp_path / "error.json"
    handler = AtomicErrorHandler()
    handler._write_error_file(str(target), json.dumps({"message": "first"}))

    def killed(src, dst):
        raise KeyboardInterrupt  # the rank dies between writing and committing

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        handler._write_error_file(str(target), json.dumps({"message": "second " * 1000}))
    assert json.loads(target.read_text()) == {"message": "first"}  # what the agent reads is whole


def test_average_last_warns_when_it_reaches_before_the_last_fifth(tmp_path: Path):
    seen = TrainConfig(steps=1500, checkpoint_every=250, keep_last=5, average_last=5)  # the run
    assert seen.averaged_steps() == [500, 750, 1000, 1250, 1500]
    assert seen.average_warning() == (
        "warning: train.average_last 5 averages the checkpoints of steps 500, 750, 1000, 1250, 1500, reaching back "
        "67% of the 1500-step schedule (more than its last fifth); set train.checkpoint_every: 75 or a smaller "
        "train.average_last")
    fixed = TrainConfig(steps=1500, checkpoint_every=75, keep_last=5, average_last=5)
    assert fixed.averaged_steps()[0] >= 1200 and fixed.average_warning() is None
    mboshi = load_config(Path(__file__).resolve().parents[2] / "configs" / "mboshi-asr.yaml").train
    assert mboshi.averaged_steps() == [4000, 4250, 4500, 4750, 5000] and mboshi.average_warning() is None
    assert TrainConfig(average_last=1).average_warning() is None


def test_worker_text_reaches_the_terminal_as_text_not_markup():
    """gloo's error text carries `[/…]` (a rich closing tag): printed as markup it crashed the CLI with MarkupError."""
    from hearthkit.cli.common import console
    from hearthkit.cli.train import _progress_runner, _say

    text = "RuntimeError: [/opt/gloo/tcp/pair.cc:534] Connection reset [bold]x[/]"  # shorter than a line
    _, on_line = _progress_runner(6)
    with console.capture() as cap:
        on_line(text)
        _say(text)
    assert cap.get().splitlines() == [text, text]
