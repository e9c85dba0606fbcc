"""The training worker torchrun starts: a recipe's model over governed data, parallelised, checkpointed.

The loop stays thin; each part is a component: parallel (process group, DDP/FSDP2, autocast), optim (AdamW,
schedule), checkpoint (DCP, atomic), metrics (+ tracking), faults (rank logs, failure records), stop (clean exit).
"""

from __future__ import annotations

import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.elastic.multiprocessing.errors import record

from hearthkit.data.loader import GovernedReader
from hearthkit.engine import checkpoint, dataloading, preempt, stop
from hearthkit.engine.config import RunConfig
from hearthkit.engine.faults import STOP_ENV, AtomicErrorHandler, RankLog, attempt, die_with_parent, inject
from hearthkit.engine.metrics import Meter, peak_tflops
from hearthkit.engine.optim import build_optimizer, build_scheduler
from hearthkit.engine.parallel import (
    SideGroups,
    autocast,
    deterministic,
    end_warmup,
    full_weights,
    grad_sync,
    init_distributed,
    parallelize,
    pick_device,
    refusal_of,
    side_groups,
    unwrap,
)
from hearthkit.engine.proximal import Proximal
from hearthkit.engine.sampler import StepSampler
from hearthkit.engine.validate import valid_loss
from hearthkit.errors import HearthError
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes import get_recipe
from hearthkit.recipes.base import Recipe
from hearthkit.store.vault import store_from_spec

STATE_FILE = "state.json"  # {"status": "finished" | "stopped", "step": N}, written by rank 0 at the end


@dataclass
class Loop:
    """What one optimizer step needs."""

    recipe: Recipe
    model: nn.Module
    batches: Iterator[dict]  # this rank's micro-batches in order, from the data loader (dataloading.py)
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    cfg: RunConfig
    device: torch.device
    proximal: Proximal | None = None  # FedProx's term (engine/proximal.py) when train.proximal_mu > 0

    def step(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """One optimizer step of `grad_accum` micro-batches; return the mean loss and summed counts."""
        t = self.cfg.train
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        counts: dict[str, float] = {}
        for micro in range(t.grad_accum):
            batch = next(self.batches)  # micro-batch step x grad_accum + micro, prepared ahead by the loader
            batch = dataloading.to_device(batch, self.device, t.compile and self.cfg.data.compile_dynamic)
            with grad_sync(self.model, micro == t.grad_accum - 1):
                with autocast(t, self.device):
                    loss, stats = self.recipe.loss(self.model, batch)
                objective = loss if self.proximal is None else loss + self.proximal()  # logged: the recipe's loss
                (objective / t.grad_accum).backward()
            total += loss.detach().float() / t.grad_accum
            for k, v in stats.items():
                counts[k] = counts.get(k, 0.0) + v
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        self.opt.step()
        self.sched.step()
        return total, counts

    def run(self, step: int, meter: Meter, log: RankLog) -> None:
        """STEP with its bookkeeping (metrics, rank log, test faults); the caller's StopVote decides on stopping."""
        try:
            loss, stats = self.step(step)
        except RuntimeError as exc:
            refusal = refusal_of(exc) if self.cfg.train.deterministic else None
            if refusal is None:
                raise
            raise HearthError(refusal) from None
        meter.add(loss, stats)
        done = step + 1
        log.step = done
        log.write(f"step {done} done")
        inject(log.rank, done, log)  # test faults; a test's stop request is made below, a step early
        if done % self.cfg.train.log_every == 0 or done == self.cfg.train.steps:
            meter.report(done, self.sched.get_last_lr()[0])


def stop_hook_due(rank: int, step: int) -> bool:
    """Test-only: whether $HEARTH_TEST_STOP (RANK:S) asks the group to stop after STEP. The request is made when
    step S-1 ends, because the group's vote on stopping arrives one step after it is cast (preempt.StopVote)."""
    return os.environ.get(STOP_ENV) == f"{rank}:{step}" and attempt() == 0


def load_data(run_dir: Path, spec: dict, cfg: RunConfig, recipe: Recipe, mcfg, prep: dict, rank: int):
    """The training items of the run's manifest, and its validation items if any, read through the governed
    reader: (training dataset, its item count, validation dataset or None)."""
    manifest = Manifest.read(run_dir / "manifest.json")
    if manifest.hash != spec["manifest_hash"]:
        raise RuntimeError(f"{run_dir}/manifest.json changed since the run was planned; refusing to train")
    split = json.loads((run_dir / "split.json").read_text())
    store = store_from_spec(spec)

    def dataset(part: str, log: str, train: bool):
        ids = set(split.get(part) or [])
        entries = [e for e in manifest.included if e["item_id"] in ids]
        reader = GovernedReader(store, entries, run_dir / "access" / log)
        return recipe.dataset(mcfg, prep, entries, reader, train=train) if entries else None, len(entries)

    data, n_items = dataset("train", f"rank{rank}.jsonl", train=True)
    valid, _ = dataset("valid", f"rank{rank}-valid.jsonl", train=False)
    return data, n_items, valid


def example_lengths(data, cfg: RunConfig) -> list[float] | None:
    """Per-example lengths for train.bucket (a dataset offers `lengths()`), or None when bucketing is off."""
    if not cfg.train.bucket:
        return None
    if not hasattr(data, "lengths"):
        raise HearthError(f"train.bucket: the {cfg.recipe} recipe's examples have one length; set train.bucket: 0")
    return data.lengths()


def _averaged(root: Path, n: int, sides: SideGroups) -> list[Path]:
    """The last N checkpoints to average: rank 0's listing, broadcast, so every rank loads the same ones."""
    names = [[p.name for p in checkpoint.checkpoints(root)[-n:]] if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(names, src=0, group=sides.final)
    return [root / name for name in names[0]]


def say(msg: str, log: RankLog) -> None:
    """Rank 0 speaks for the group on stdout; every rank keeps its own log."""
    log.write(msg)
    if log.rank == 0:
        print(msg, flush=True)


def train(run_dir: Path, log_holder: list, exit_process: bool = False) -> str:
    """Train the run in RUN_DIR to its last step (or a requested stop), resuming from the latest checkpoint."""
    spec = json.loads((run_dir / "run.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    t = cfg.train
    torch.set_num_threads(cfg.launch.threads_per_worker)
    deterministic(t)  # before CUDA is initialised
    device = pick_device()
    init_distributed(cfg.launch, device)
    sides = side_groups(cfg.launch)  # gloo groups for every CPU-side collective, whatever the backend
    rank, world = dist.get_rank(), dist.get_world_size()
    log = RankLog(run_dir, rank)
    log_holder.append(log)
    log.write(f"process group: {dist.get_backend_config()}, {world} workers, device {device}")

    recipe = get_recipe(cfg.recipe)
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    prep = recipe.load_prep(run_dir / "prep")
    data, n_items, valid = load_data(run_dir, spec, cfg, recipe, mcfg, prep, rank)
    torch.manual_seed(t.seed)  # same initial weights on every rank
    model = recipe.build_model(mcfg, prep)
    if spec.get("parent"):
        say(recipe.init_from_parent(model, Path(spec["parent"]["path"]), prep), log)  # a registered parent model
    recipe.initialise(model, mcfg, prep)  # e.g. asr's model.init_from: a model folder; a checkpoint overrides both
    n_params = sum(p.numel() for p in model.parameters())
    flops = recipe.flops_per_sample(mcfg, model)
    model = parallelize(model, t, device, dynamic_lengths=cfg.data.compile_dynamic)
    # Frozen copy of the starting weights (parent loaded, checkpoint not yet): FedProx pulls towards them.
    proximal = Proximal(unwrap(model), t.proximal_mu) if t.proximal_mu > 0 else None
    opt = build_optimizer(model, t, device)
    sched = build_scheduler(opt, t)
    sampler = StepSampler(len(data), t.batch_size, rank, world, t.seed, example_lengths(data, cfg), t.bucket)
    torch.manual_seed(t.seed * 1000 + rank + 1)  # augmentation / dropout differ per rank
    state = checkpoint.ModelAndOptimizer(unwrap(model), opt)

    ckpt_root = run_dir / "checkpoints"
    position = checkpoint.data_position(sampler, t.grad_accum)
    start, last, changed = checkpoint.resume(ckpt_root, state, sched, sides, position, t.allow_change)
    if last is not None:
        say(f"resumed from checkpoint {last.name} at step {start}", log)
    say(f"training {cfg.recipe} ({n_params / 1e6:.2f}M parameters) on {n_items} items, {world} workers "
        f"({t.parallel}, {device.type}), steps {start}->{t.steps}", log)

    tracker = None
    if rank == 0 and t.mlflow and os.environ.get("MLFLOW_TRACKING_URI"):
        from hearthkit.engine.tracking import MlflowTracker

        tracker = MlflowTracker(run_dir, cfg.name, spec["config"],
                                {"recipe": cfg.recipe, "manifest_sha256": spec["manifest_hash"]})
    meter = Meter(run_dir, t.steps, device, flops, peak_tflops(device, t.peak_tflops), tracker, sides.host)
    for field, (old, new) in changed.items():  # accepted by train.allow_change: on record, in the run's metrics
        meter.note({"step": start, "resume_changed": field, "old": old, "new": new, "allowed_by": "train.allow_change"},
                   f"resuming with train.{field} {new} instead of {old} (train.allow_change): the weights will "
                   "differ from an uninterrupted run")
    if (warning := t.average_warning()) is not None:
        say(warning, log)
    workers = dataloading.resolve_workers(cfg.data, device, cfg.launch.nproc)
    batches = dataloading.StepBatches(data, sampler, recipe.collate, t.seed, rank)
    feed = iter(dataloading.loader(batches, start * t.grad_accum, t.steps * t.grad_accum, cfg.data, device, workers))
    log.write(f"data: {workers} loader workers, prefetch {cfg.data.prefetch if workers else 0} per worker")
    loop = Loop(recipe, model, feed, opt, sched, cfg, device, proximal)
    watch = preempt.PreemptWatch.from_env()  # SLURM USR1 / k8s TERM -> checkpoint, exit for requeue
    vote = preempt.StopVote(watch, sides.host)  # stop and preemption flags, agreed a step late without blocking
    if stop_hook_due(rank, start + 1):
        stop.request()
    vote.cast()  # decided after the first step
    warmup_steps = 5 if t.compile else 1  # compilation may take a few steps (new shapes); then the short timeout
    done = start
    halt = preempted = False
    for step in range(start, t.steps):
        loop.run(step, meter, log)
        done = step + 1
        if stop_hook_due(rank, done + 1):
            stop.request()
        halt, preempted = vote.decide()
        if done == min(start + warmup_steps, t.steps):
            end_warmup(cfg.launch)
        if done % t.checkpoint_every == 0 or done == t.steps or halt:
            path = checkpoint.save(ckpt_root, done, state, checkpoint.loop_state(done, sched, sampler, t.grad_accum),
                                   t.keep_last, sides)
            say(f"checkpoint {path.name}", log)
            if valid is not None:  # ranks' shares take uneven time: the checkpoint timeout covers it
                meter.report_valid(done, valid_loss(recipe, unwrap(model), valid, t, device, sides.files))
        if preempted and done < t.steps:
            vote.drain()
            if tracker is not None:
                tracker.close("KILLED")
            watch.exit_for_requeue(rank, done)
        if halt:
            say(f"stopping at step {done} as asked; the checkpoint holds everything to resume", log)
            break
    vote.drain()  # the vote cast after the last step: every rank waits on it, so the group stays in step
    status = "stopped" if halt and done < t.steps else "finished"
    if status == "finished":
        if t.average_last > 1:
            paths = _averaged(ckpt_root, t.average_last, sides)
            checkpoint.load_average(paths, unwrap(model), sides)
            say(f"averaged the weights of {len(paths)} checkpoints: {', '.join(p.name for p in paths)}", log)
            if valid is not None:  # the logged losses were of single checkpoints; this is the model shipped
                meter.report_valid_averaged(done, valid_loss(recipe, unwrap(model), valid, t, device, sides.final),
                                            len(paths))
        weights = full_weights(model)  # collective under FSDP2
        if rank == 0:
            checkpoint.write_safetensors(weights, run_dir / "final" / "model.safetensors")
    if rank == 0:
        checkpoint.write_durable(run_dir / STATE_FILE, json.dumps({"status": status, "step": done}).encode())
    if tracker is not None:
        tracker.close("FINISHED" if status == "finished" else "KILLED")
    sides.barrier(sides.final, sides.final_timeout_s, "end of training (launch.final_timeout_s)")
    log.write(f"{status} at step {done}")
    log.close()
    if exit_process:
        # A torchrun worker exits here, with the model still referenced: tearing down DDP's reducer joins gloo's
        # worker threads while holding the GIL, and a thread still freeing the last barrier's tensors needs the
        # GIL, so destroying the group (or returning, which frees the reducer) can deadlock under load.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    dist.destroy_process_group()
    return status


def _main() -> None:
    """Entry point under torchrun: `python -m hearthkit.engine.trainer RUN_DIR`."""
    run_dir = Path(sys.argv[1])
    die_with_parent()
    holder: list[RankLog] = []
    try:
        train(run_dir, holder, exit_process=True)  # exits the process itself once everything is written
    except Exception as exc:
        # Name the rank and host so a failure in a group of workers is easy to place.
        rank = os.environ.get("RANK", "?")
        print(f"rank {rank} on {socket.gethostname()}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        log = holder[0] if holder else RankLog(run_dir, int(os.environ.get("RANK", "0")))
        log.failure(exc)
        raise


# torchrun's error file: its closing report then carries this rank's traceback (written atomically: see the handler)
main = record(_main, error_handler=AtomicErrorHandler())

if __name__ == "__main__":
    main()
