"""MFU and tokens/s of the lm recipe's GPT at GPT-2 small size (124M): bf16 autocast, torch.compile, fused AdamW.

One command on a GPU machine: `python bench/gpu_mfu.py` (add `--fsdp` under torchrun to shard with FSDP2).
MFU = tokens/s x FLOPs per token / peak, FLOPs per token = 6N + 12·L·C·T (matmuls plus attention scores),
peak = 989 TFLOP/s (H100/H200 SXM bf16 dense). Without a GPU it says so plainly and runs a tiny smoke config on
the CPU (fp32, no compile): that proves the script runs; its MFU means nothing.

Example: python bench/gpu_mfu.py --steps 30 --batch 16
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date

import torch
import torch.nn.functional as F

from hearthkit.recipes.lm.model import GPT, LMConfig

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def peak_flops(name: str) -> float | None:
    """Dense bf16 peak of the GPU called NAME, if known."""
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="Timed steps (after warm-up).")
    ap.add_argument("--warmup", type=int, default=5, help="Untimed steps (compilation happens here).")
    ap.add_argument("--batch", type=int, default=16, help="Sequences per step per GPU.")
    ap.add_argument("--block", type=int, default=1024, help="Sequence length.")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--fsdp", action="store_true", help="Shard with FSDP2 fully_shard (run under torchrun).")
    ap.add_argument("--cpu-smoke", action="store_true", help="Force the tiny CPU smoke run.")
    args = ap.parse_args()

    gpu = torch.cuda.is_available() and not args.cpu_smoke
    rank, world = 0, 1
    if gpu:
        if args.fsdp:
            torch.distributed.init_process_group("nccl")
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        device = torch.device("cuda")
        name = torch.cuda.get_device_name()
        cfg = LMConfig(n_layer=12, n_head=12, n_embd=768, block_size=args.block, bias=False, dropout=0.0)
        vocab, batch = 50304, args.batch  # GPT-2 vocabulary padded to a multiple of 64
        torch.backends.cuda.matmul.allow_tf32 = True
        print(f"GPU: {name} x{world}; GPT-2 small (124M), bf16 autocast, "
              f"{'no compile' if args.no_compile else 'torch.compile'}, fused AdamW", flush=True)
    else:
        device, name = torch.device("cpu"), "CPU"
        cfg = LMConfig(n_layer=2, n_head=2, n_embd=64, block_size=64, dropout=0.0)
        vocab, batch = 512, 4
        args.steps, args.warmup = min(args.steps, 5), 1
        print("no GPU available here: running a tiny CPU smoke config (fp32, no compile); "
              "its MFU is not a measurement — run this script on an H100/H200 for the real figure", flush=True)

    torch.manual_seed(0)
    model = GPT(cfg, vocab).to(device)
    if gpu and args.fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in model.h:
            fully_shard(block)
        fully_shard(model)
    opt = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=gpu)
    step_model = torch.compile(model) if gpu and not args.no_compile else model
    T = cfg.block_size
    x = torch.randint(0, vocab, (batch, T + 1), device=device)  # synthetic tokens: this measures compute only

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            logits = step_model(x[:, :-1])  # (B, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), x[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    if gpu:
        torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    if gpu:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    tokens_s = batch * T * args.steps / dt  # per GPU
    fpt = model.flops_per_token(T)
    peak = peak_flops(name) if gpu else None
    result = {"metric": "GPT-124M MFU" if gpu else "GPT tiny CPU smoke", "device": name, "world": world,
              "params": model.n_params(), "flops_per_token": fpt, "batch": batch, "block": T,
              "tokens_per_s_per_device": round(tokens_s, 1), "achieved_tflops": round(tokens_s * fpt / 1e12, 2),
              "mfu": round(tokens_s * fpt / peak, 4) if peak else None, "peak_tflops": peak / 1e12 if peak else None,
              "step_ms": round(1000 * dt / args.steps, 2), "warmup_s": round(warm_s, 1), "final_loss": float(loss),
              "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
              "date": date.today().isoformat()}
    if rank == 0:
        print(json.dumps(result), flush=True)
    if gpu and args.fsdp:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
