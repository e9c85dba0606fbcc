"""One engine run under torchrun for bench/gpu_check.sh: the engine's own parts on a GPT over synthetic tokens.

It uses what `hearth train` uses (process group with the warm-up timeout, gloo side groups, DDP or FSDP2, bf16
autocast, torch.compile, AdamW and schedule, DCP checkpoints with rank 0's choice on resume, Meter, final weights)
but no catalog or governed data, so it needs only torch, pydantic and PyYAML on the GPU machine. The batch of each
step is a pure function of (step, rank), so a resumed run sees the data an uninterrupted one saw.

Example: python -m torch.distributed.run --standalone --nproc-per-node=8 bench/gpu_engine_check.py --folder /tmp/r \
    --parallel fsdp2 --compile --steps 30
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
import torch.nn.functional as F

from hearthkit.engine import checkpoint
from hearthkit.engine.config import LaunchConfig, TrainConfig
from hearthkit.engine.metrics import Meter, peak_tflops
from hearthkit.engine.optim import build_optimizer, build_scheduler
from hearthkit.engine.parallel import (
    autocast,
    deterministic,
    end_warmup,
    full_weights,
    init_distributed,
    parallelize,
    pick_device,
    side_groups,
    unwrap,
)
from hearthkit.recipes.lm.model import GPT, LMConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", required=True, help="Run folder (checkpoints, metrics.jsonl, result.json).")
    ap.add_argument("--parallel", choices=["ddp", "fsdp2"], default="ddp")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--deterministic", action="store_true")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--every", type=int, default=10, help="Checkpoint every N steps.")
    ap.add_argument("--kill-at", type=int, default=0, help="Rank 0 SIGKILLs itself after this step (first attempt).")
    ap.add_argument("--tiny", action="store_true", help="A tiny model (CPU smoke runs of this script).")
    args = ap.parse_args()

    run = Path(args.folder)
    run.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    t = TrainConfig(steps=args.steps, batch_size=4 if args.tiny else 16, lr=6e-4, warmup=5, parallel=args.parallel,
                    precision="bf16" if cuda else "fp32", compile=args.compile, checkpoint_every=args.every,
                    keep_last=2, log_every=5, seed=0, deterministic=args.deterministic, mlflow=False)
    launch = LaunchConfig(timeout_s=120, warmup_timeout_s=900, checkpoint_timeout_s=600, final_timeout_s=600)
    deterministic(t)  # before CUDA is initialised
    device = pick_device()
    init_distributed(launch, device)
    sides = side_groups(launch)
    rank, world = dist.get_rank(), dist.get_world_size()
    mcfg = LMConfig(n_layer=2, n_head=2, n_embd=64, block_size=32, dropout=0.1) if args.tiny else \
        LMConfig(n_layer=6, n_head=8, n_embd=512, block_size=256, dropout=0.1)
    vocab = 256 if args.tiny else 8192
    torch.manual_seed(t.seed)
    model = GPT(mcfg, vocab)
    flops = model.flops_per_token(mcfg.block_size) * mcfg.block_size
    model = parallelize(model, t, device)
    opt = build_optimizer(model, t, device)
    sched = build_scheduler(opt, t)
    torch.manual_seed(t.seed * 1000 + rank + 1)  # dropout differs per rank
    state = checkpoint.ModelAndOptimizer(unwrap(model), opt)
    sampler = SimpleNamespace(seed=t.seed, bs=t.batch_size, world=world, bucket=0)
    start, last, _ = checkpoint.resume(run / "checkpoints", state, sched, sides,
                                       checkpoint.data_position(sampler, 1), [])
    meter = Meter(run, t.steps, device, flops, peak_tflops(device, None), None, sides.host)
    if rank == 0:
        print(f"{args.parallel} compile={args.compile} deterministic={args.deterministic} world={world} "
              f"device={device} backend={dist.get_backend_config()} resumed_from={last.name if last else None}",
              flush=True)
    t0 = time.perf_counter()
    for step in range(start, t.steps):
        g = torch.Generator().manual_seed(step * world + rank)  # the data is a function of (step, rank)
        x = torch.randint(0, vocab, (t.batch_size, mcfg.block_size + 1), generator=g).to(device, non_blocking=True)
        with autocast(t, device):
            logits = model(x[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        meter.add(loss.detach(), {"samples": float(t.batch_size), "tokens": float(t.batch_size * mcfg.block_size)})
        done = step + 1
        if done == start + (5 if t.compile else 1):
            end_warmup(launch)
        if done % t.log_every == 0 or done == t.steps:
            meter.report(done, sched.get_last_lr()[0])
        if done % t.checkpoint_every == 0 or done == t.steps:
            checkpoint.save(run / "checkpoints", done, state, checkpoint.loop_state(done, sched, sampler), t.keep_last,
                            sides)
        if args.kill_at == done and rank == 0 and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0":
            os.kill(os.getpid(), signal.SIGKILL)  # a worker lost mid-run; torchrun restarts the group
    weights = full_weights(model)
    if rank == 0:
        checkpoint.write_safetensors(weights, run / "final" / "model.safetensors")
        digest = hashlib.sha256()
        for k in sorted(weights):
            digest.update(k.encode())
            digest.update(weights[k].float().numpy().tobytes())
        (run / "result.json").write_text(json.dumps({
            "parallel": args.parallel, "compile": args.compile, "deterministic": args.deterministic, "world": world,
            "resumed_from": start, "seconds": time.perf_counter() - t0, "weights_sha256": digest.hexdigest(),
            "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}))
    sides.barrier(sides.final, sides.final_timeout_s, "end of the check")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
