"""Per-rank parameter + optimizer memory of a ~95M-parameter wav2vec2-base-shaped CTC model: FSDP2 vs DDP.

Two CPU ranks (gloo) each build the model as the asr recipe does for a base (recipes/asr/hf_model.py: random
weights, a new CTC head, feature encoder frozen), wrap it with the engine's own `parallelize` (DDP, or FSDP2 with
one unit per transformer block) and `build_optimizer` (AdamW), and take two real training steps on synthetic
1-s waveforms. Then each rank counts the bytes it holds: parameters (its shard under FSDP2), gradients and
AdamW state (exp_avg, exp_avg_sq, step); also the process's peak resident memory. Prints one JSON line with both
layouts and the ratio FSDP2 / DDP (target <= 0.6).

Example: python bench/fsdp_memory.py --hidden 768 --layers 12
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _bytes(t: torch.Tensor) -> int:
    local = t.to_local() if hasattr(t, "to_local") else t  # a DTensor's shard on this rank
    return local.numel() * local.element_size()


def held(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of parameters, gradients and optimizer state this rank holds."""
    params = sum(_bytes(p) for p in model.parameters())
    grads = sum(_bytes(p.grad) for p in model.parameters() if p.grad is not None)
    state = sum(_bytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v))
    return {"params": params, "grads": grads, "optimizer": state}


def worker(rank: int, world: int, store: str, layout: str, args: argparse.Namespace, out: str) -> None:
    """Build, wrap, step twice, count; rank 0 writes the counts to OUT."""
    from transformers import Wav2Vec2Config

    from hearthkit.engine.config import TrainConfig
    from hearthkit.engine.optim import build_optimizer
    from hearthkit.engine.parallel import parallelize
    from hearthkit.recipes.asr.hf_model import build_ctc
    from hearthkit.recipes.asr.model import ASRConfig

    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", store=dist.FileStore(store, world), rank=rank, world_size=world)
    config = Wav2Vec2Config(hidden_size=args.hidden, num_hidden_layers=args.layers,
                            num_attention_heads=max(1, args.hidden // 64), intermediate_size=4 * args.hidden,
                            feat_extract_norm="layer", do_stable_layer_norm=True, mask_time_prob=0.05,
                            mask_time_length=2)
    torch.manual_seed(0)
    mcfg = ASRConfig(base="bench", arch="hf_ctc")
    model = build_ctc(mcfg, {"config": config, "base": {"name": "bench"}}, vocab_size=40)
    n_params = sum(p.numel() for p in model.parameters())
    train = TrainConfig(parallel=layout, batch_size=args.batch, lr=1e-4)
    wrapped = parallelize(model, train, torch.device("cpu"))
    opt = build_optimizer(wrapped, train, torch.device("cpu"))
    g = torch.Generator().manual_seed(rank)
    wave = torch.randn(args.batch, 16000, generator=g)
    lengths = torch.full((args.batch,), 16000)
    t0 = time.perf_counter()
    for _ in range(2):
        logp, out_len = wrapped(wave, lengths)
        tokens = torch.randint(1, 41, (args.batch * 10,), generator=g)
        loss = torch.nn.functional.ctc_loss(logp.transpose(0, 1), tokens, out_len, torch.full((args.batch,), 10),
                                            zero_infinity=True)
        loss.backward()
        opt.step()
    step_s = (time.perf_counter() - t0) / 2
    counts = held(wrapped, opt)
    counts["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    counts["step_s"] = step_s
    counts["n_params"] = n_params
    gathered: list = [None] * world
    dist.all_gather_object(gathered, counts)
    if rank == 0:
        Path(out).write_text(json.dumps(gathered))
    dist.destroy_process_group()


def run(layout: str, args: argparse.Namespace) -> list[dict]:
    """Per-rank counts of LAYOUT on 2 spawned CPU ranks."""
    tmp = Path(tempfile.mkdtemp(prefix=f"fsdp-mem-{layout}-"))
    mp.spawn(worker, args=(2, str(tmp / "store"), layout, args, str(tmp / "out.json")), nprocs=2, join=True)
    return json.loads((tmp / "out.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, default=768, help="768 and 12 layers: wav2vec2-base shape (~95M)")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    result: dict = {"metric": "per-rank parameter + optimizer memory, FSDP2 vs DDP (2 CPU ranks, gloo)"}
    for layout in ("ddp", "fsdp2"):
        ranks = run(layout, args)
        worst = max(ranks, key=lambda r: r["params"] + r["optimizer"])
        result[layout] = {"params_mib": round(worst["params"] / 2**20, 1),
                          "grads_mib": round(worst["grads"] / 2**20, 1),
                          "optimizer_mib": round(worst["optimizer"] / 2**20, 1),
                          "params_plus_optimizer_mib": round((worst["params"] + worst["optimizer"]) / 2**20, 1),
                          "peak_rss_mib": round(max(r["peak_rss"] for r in ranks) / 2**20, 1),
                          "step_s": round(max(r["step_s"] for r in ranks), 2)}
        result["n_params_m"] = round(ranks[0]["n_params"] / 1e6, 1)
    result["ratio_params_plus_optimizer"] = round(result["fsdp2"]["params_plus_optimizer_mib"]
                                                  / result["ddp"]["params_plus_optimizer_mib"], 3)
    result["ratio_peak_rss"] = round(result["fsdp2"]["peak_rss_mib"] / result["ddp"]["peak_rss_mib"], 3)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
