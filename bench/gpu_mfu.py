"""MFU and tokens/s of the lm recipe's GPT at GPT-2 small size (124M): bf16 autocast, torch.compile, fused AdamW.

One command on a GPU machine: `python bench/gpu_mfu.py` (add `--fsdp` under torchrun to shard with FSDP2).
MFU = tokens/s x FLOPs per token / peak, FLOPs per token = 6N + 12·L·C·T (matmuls plus attention scores),
peak = 989 TFLOP/s (H100/H200 SXM bf16 dense). Without a GPU it says so plainly and runs a tiny smoke config on
the CPU (fp32, no compile): that proves the script runs; its MFU means nothing.

`--model wav2vec2-large` and `--model nllb-600m` (issue 20) time pretrained-base shapes with random weights
(nothing is downloaded): a wav2vec2-large / XLS-R-300M-shaped CTC encoder (24 blocks, 1024 wide, ~315M) on 16-s
waveforms, and an NLLB-200-distilled-600M-shaped seq2seq model (12+12 blocks, 1024 wide, 256k vocabulary, ~615M)
on 128+128-token pairs. Their model FLOPs count the matmuls of the blocks (6·N·tokens, N without embeddings),
attention scores (12·L·C·T per token), the output layer, and for wav2vec2 the frozen convolutional feature
encoder's forward pass only (2·Cin·Cout·k per output frame and layer; it gets no backward).

Example: python bench/gpu_mfu.py --steps 30 --batch 16
Example: python bench/gpu_mfu.py --model wav2vec2-large --batch 8
Example: python bench/gpu_mfu.py --model nllb-600m --batch 16
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


def wav2vec2_large(gpu: bool):
    """(model, step inputs builder, FLOPs per sample, label) of a wav2vec2-large-shaped CTC encoder."""
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    if gpu:
        cfg = Wav2Vec2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                             feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True, vocab_size=64,
                             mask_time_prob=0.05, layerdrop=0.0)
        seconds = 16.0
    else:
        cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                             conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4), num_feat_extract_layers=2,
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=64)
        seconds = 1.0
    model = Wav2Vec2ForCTC(cfg)
    model.freeze_feature_encoder()
    samples = int(16000 * seconds)
    lengths, flops_conv, cin = samples, 0, 1
    for c, k, st in zip(cfg.conv_dim, cfg.conv_kernel, cfg.conv_stride, strict=True):
        lengths = (lengths - k) // st + 1
        flops_conv += 2 * cin * c * k * lengths  # forward only: the feature encoder is frozen
        cin = c
    T, L, C = lengths, cfg.num_hidden_layers, cfg.hidden_size
    blocks = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n)
    flops = 6 * blocks * T + 12 * L * C * T * T + 6 * C * cfg.vocab_size * T + flops_conv

    def inputs(batch: int, device: torch.device) -> dict:
        return {"input_values": torch.randn(batch, samples, device=device),
                "labels": torch.randint(1, cfg.vocab_size, (batch, max(1, T // 4)), device=device)}

    return model, inputs, flops, f"wav2vec2-large-shaped CTC, {seconds:.0f}-s audio ({T} frames)"


def nllb_600m(gpu: bool):
    """(model, step inputs builder, FLOPs per sample, label) of an NLLB-600M-shaped seq2seq model."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    if gpu:
        cfg = M2M100Config(vocab_size=256206, d_model=1024, encoder_layers=12, decoder_layers=12,
                           encoder_attention_heads=16, decoder_attention_heads=16, encoder_ffn_dim=4096,
                           decoder_ffn_dim=4096, encoder_layerdrop=0.0, decoder_layerdrop=0.0, dropout=0.1)
        S = T = 128
    else:
        cfg = M2M100Config(vocab_size=512, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                           decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                           encoder_layerdrop=0.0, decoder_layerdrop=0.0)
        S = T = 16
    model = M2M100ForConditionalGeneration(cfg)
    C, L = cfg.d_model, cfg.encoder_layers
    enc = sum(p.numel() for n, p in model.named_parameters() if ".encoder.layers." in n)
    dec = sum(p.numel() for n, p in model.named_parameters() if ".decoder.layers." in n)
    # blocks, self-attention scores (encoder, causal decoder ~ half), cross-attention scores, tied output layer
    flops = 6 * enc * S + 6 * dec * T + 12 * L * C * (S * S + T * T // 2 + S * T) + 6 * C * cfg.vocab_size * T

    def inputs(batch: int, device: torch.device) -> dict:
        return {"input_ids": torch.randint(4, cfg.vocab_size, (batch, S), device=device),
                "labels": torch.randint(4, cfg.vocab_size, (batch, T), device=device)}

    return model, inputs, flops, f"NLLB-600M-shaped seq2seq, {S}+{T} tokens"


def hf_main(args: argparse.Namespace) -> None:
    """MFU of a pretrained-base shape (random weights): one device, bf16 autocast, fused AdamW, optional compile."""
    gpu = torch.cuda.is_available() and not args.cpu_smoke
    device = torch.device("cuda" if gpu else "cpu")
    name = torch.cuda.get_device_name() if gpu else "CPU"
    if not gpu:
        args.steps, args.warmup = min(args.steps, 3), 1
        print("no GPU available here: running a tiny CPU smoke config (fp32, no compile); its MFU is not a "
              "measurement — run this script on an H100/H200 for the real figure", flush=True)
    torch.manual_seed(0)
    model, inputs, flops, label = (wav2vec2_large if args.model == "wav2vec2-large" else nllb_600m)(gpu)
    model.to(device).train()
    batch = args.batch if gpu else 2
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=gpu)
    step_model = torch.compile(model) if gpu and not args.no_compile else model
    x = inputs(batch, device)

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            loss = step_model(**x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    for _ in range(args.warmup):
        step()
    if gpu:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    if gpu:
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / args.steps
    peak = peak_flops(name) if gpu else None
    achieved = batch * flops / dt
    print(json.dumps({"metric": f"{args.model} MFU" if gpu else f"{args.model} tiny CPU smoke", "shape": label,
                      "device": name, "params": sum(p.numel() for p in model.parameters()),
                      "flops_per_sample": flops, "batch": batch, "step_ms": round(1000 * dt, 2),
                      "achieved_tflops": round(achieved / 1e12, 3), "mfu": round(achieved / peak, 4) if peak else None,
                      "final_loss": float(loss), "compile": gpu and not args.no_compile,
                      "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if gpu else None,
                      "date": date.today().isoformat()}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30, help="Timed steps (after warm-up).")
    ap.add_argument("--warmup", type=int, default=5, help="Untimed steps (compilation happens here).")
    ap.add_argument("--batch", type=int, default=16, help="Sequences per step per GPU.")
    ap.add_argument("--block", type=int, default=1024, help="Sequence length.")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--fsdp", action="store_true", help="Shard with FSDP2 fully_shard (run under torchrun).")
    ap.add_argument("--cpu-smoke", action="store_true", help="Force the tiny CPU smoke run.")
    ap.add_argument("--model", choices=["gpt", "wav2vec2-large", "nllb-600m"], default="gpt",
                    help="gpt (GPT-2 small, the lm recipe) or a pretrained-base shape (issue 20)")
    args = ap.parse_args()
    if args.model != "gpt":
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        hf_main(args)
        return

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
