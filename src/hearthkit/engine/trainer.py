"""The training worker torchrun starts: DDP over a recipe's model, governed data, DCP checkpoints."""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch.nn.parallel import DistributedDataParallel as DDP

from hearthkit.data.loader import GovernedReader
from hearthkit.engine import checkpoint
from hearthkit.engine.config import RunConfig
from hearthkit.engine.sampler import StepSampler
from hearthkit.governance.manifest import Manifest
from hearthkit.recipes import get_recipe
from hearthkit.store.cas import ContentStore


def lr_lambda(warmup: int, total: int):
    """Linear warm-up then cosine decay to 10% of the peak."""
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def log(rank: int, msg: str) -> None:
    """Rank 0 speaks for the group; other ranks stay quiet unless something is wrong."""
    if rank == 0:
        print(msg, flush=True)


def train(run_dir: Path) -> None:
    """Train the run described in RUN_DIR/run.json to its last step, resuming from the latest checkpoint."""
    spec = json.loads((run_dir / "run.json").read_text())
    cfg = RunConfig.model_validate(spec["config"])
    torch.set_num_threads(cfg.launch.threads_per_worker)
    dist.init_process_group(cfg.launch.backend, timeout=timedelta(seconds=cfg.launch.timeout_s))
    rank, world = dist.get_rank(), dist.get_world_size()
    manifest = Manifest.read(run_dir / "manifest.json")
    if manifest.hash != spec["manifest_hash"]:
        raise SystemExit(f"rank {rank}: {run_dir}/manifest.json changed since the run was planned; refusing to train")
    split = json.loads((run_dir / "split.json").read_text())
    train_ids = set(split["train"])
    entries = [e for e in manifest.included if e["item_id"] in train_ids]

    recipe = get_recipe(cfg.recipe)
    mcfg = recipe.ModelConfig.model_validate(cfg.model)
    prep = recipe.load_prep(run_dir / "prep")
    reader = GovernedReader(ContentStore(Path(spec["store"])), entries, run_dir / "access" / f"rank{rank}.jsonl")
    data = recipe.dataset(mcfg, prep, entries, reader, train=True)
    torch.manual_seed(cfg.train.seed)  # same initial weights on every rank
    model = recipe.build_model(mcfg, prep)
    recipe.initialise(model, mcfg, prep)  # e.g. transfer from a parent model; a checkpoint overrides it below
    ddp = DDP(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            fused=torch.cuda.is_available() or None)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg.train.warmup, cfg.train.steps))
    sampler = StepSampler(len(data), cfg.train.batch_size, rank, world, cfg.train.seed)
    torch.manual_seed(cfg.train.seed * 1000 + rank + 1)  # augmentation / dropout differ per rank

    ckpt_root = run_dir / "checkpoints"
    start = 0
    last = checkpoint.latest(ckpt_root)
    if last is not None:
        extra = checkpoint.load(last, ddp, opt)
        start = extra["step"]
        sched.load_state_dict(extra["scheduler"])
        torch.set_rng_state(extra["rng"])
        log(rank, f"resumed from checkpoint {last.name} at step {start}")
    n_params = sum(p.numel() for p in model.parameters())
    log(rank, f"training {cfg.recipe} ({n_params / 1e6:.2f}M parameters) on {len(entries)} items, "
              f"{world} workers, steps {start}->{cfg.train.steps}")

    totals = torch.zeros(3)  # loss sum, samples, natural units (e.g. audio seconds)
    t0 = time.perf_counter()
    unit = "samples"
    since = 0
    for step in range(start, cfg.train.steps):
        ddp.train()
        batch = recipe.collate([data[i] for i in sampler.indices(step)])
        loss, stats = recipe.loss(ddp, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ddp.parameters(), cfg.train.grad_clip)
        opt.step()
        sched.step()
        unit = next((k for k in stats if k != "samples"), "samples")
        totals += torch.tensor([float(loss.detach()), stats["samples"], stats.get(unit, 0.0)])
        done = step + 1
        since += 1
        if done % cfg.train.log_every == 0 or done == cfg.train.steps:
            dist.all_reduce(totals)
            dt = time.perf_counter() - t0
            rec = {"step": done, "steps": cfg.train.steps, "loss": totals[0].item() / (world * since),
                   "lr": sched.get_last_lr()[0], "samples_per_s": totals[1].item() / dt,
                   f"{unit}_per_s": totals[2].item() / dt}
            if rank == 0:
                with (run_dir / "metrics.jsonl").open("a") as f:
                    f.write(json.dumps(rec) + "\n")
            log(rank, "step {step}/{steps} loss {loss:.4f} lr {lr:.2e} samples/s {samples_per_s:.1f} ".format(**rec)
                + f"{unit}/s {rec[f'{unit}_per_s']:.1f}")
            totals.zero_()
            since = 0
            t0 = time.perf_counter()
        if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
            extra = {"step": done, "scheduler": sched.state_dict(), "rng": torch.get_rng_state()}
            path = checkpoint.save(ckpt_root, done, ddp, opt, extra, cfg.train.keep_last)
            log(rank, f"checkpoint {path.name}")
    if rank == 0:
        final = run_dir / "final"
        final.mkdir(exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(final / "model.safetensors"))
    dist.barrier()
    dist.destroy_process_group()


def main() -> None:
    """Entry point under torchrun: `python -m hearthkit.engine.trainer RUN_DIR`."""
    run_dir = Path(sys.argv[1])
    try:
        train(run_dir)
    except Exception as exc:
        # Name the rank and host so a failure in a group of workers is easy to place.
        rank = os.environ.get("RANK", "?")
        print(f"rank {rank} on {socket.gethostname()}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise


if __name__ == "__main__":
    main()
