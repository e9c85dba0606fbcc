"""Engine overhead: the engine's training step vs a plain PyTorch loop, same model, data and optimizer, one process.

Both run in this process on the same batches (the asr model at demo size on synthetic log-mel batches), in
alternating blocks so the shared machine's noise falls on both alike. The engine step is `Loop.run` exactly as
the trainer calls it: a real gloo group of one (where the engine leaves DDP out: nothing to all-reduce),
accumulation and autocast contexts, metrics, rank log, fault hooks, the per-step stop all-reduce. The plain loop
is what a person writes: forward, backward, clip, optimizer step, schedule step; same AdamW (groups, fused).
Prints one JSON line: median wall and CPU seconds per step of each, and their ratios (target <= 1.03).

`--model wav2vec2` times a pretrained-base model instead (issue 20): the asr recipe's wav2vec2-CTC module
(recipes/asr/hf_model.py) at wav2vec2-base shape (~95M parameters, random weights, feature encoder frozen,
SpecAugment on) over synthetic 1-2 s waveforms (target <= 1.05).

Example: python bench/engine_overhead.py --blocks 5 --steps 10
Example: python bench/engine_overhead.py --model wav2vec2 --blocks 3 --steps 4 --batch 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist

from hearthkit.engine import dataloading, preempt, stop
from hearthkit.engine.config import RunConfig
from hearthkit.engine.faults import RankLog
from hearthkit.engine.metrics import Meter
from hearthkit.engine.optim import build_optimizer, build_scheduler
from hearthkit.engine.parallel import parallelize
from hearthkit.engine.sampler import StepSampler
from hearthkit.engine.trainer import Loop
from hearthkit.recipes.asr.model import ASRConfig, CTCModel
from hearthkit.recipes.asr.recipe import ASRRecipe


class Waveforms(torch.utils.data.Dataset):
    """Normalised 1-2 s waveforms with 10-25 character transcripts, fixed by a seed."""

    def __init__(self, n: int, vocab: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            samples = int(torch.randint(16000, 32000, (), generator=g))
            chars = int(torch.randint(10, 25, (), generator=g))
            self.items.append({"feats": torch.randn(samples, generator=g),
                               "tokens": torch.randint(1, vocab + 1, (chars,), generator=g)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def wav2vec2_base(vocab: int):
    """The asr recipe's CTC module over a wav2vec2-base-shaped encoder (random weights: nothing is downloaded)."""
    from transformers import Wav2Vec2Config

    from hearthkit.recipes.asr.hf_model import build_ctc

    config = Wav2Vec2Config(mask_time_prob=0.05, layerdrop=0.0)  # wav2vec2-base: 768 wide, 12 blocks
    return build_ctc(ASRConfig(base="bench"), {"config": config, "base": {"name": "bench"}}, vocab)


class Synthetic(torch.utils.data.Dataset):
    """Log-mel utterances of 2-4 s with 20-40 character transcripts, fixed by a seed."""

    def __init__(self, n: int, n_mels: int, vocab: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        for _ in range(n):
            frames = int(torch.randint(200, 400, (), generator=g))
            chars = int(torch.randint(20, 40, (), generator=g))
            self.items.append({"feats": torch.randn(frames, n_mels, generator=g),
                               "tokens": torch.randint(1, vocab + 1, (chars,), generator=g)})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=5, help="alternating blocks of each loop")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per block")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", choices=["asr", "wav2vec2"], default="asr",
                    help="asr: the demo BiGRU on log-mel; wav2vec2: a wav2vec2-base-shaped pretrained-base model")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="engine-overhead-"))
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp / "store"), 1), rank=0, world_size=1)

    recipe, vocab = ASRRecipe(), 30
    mcfg = ASRConfig(conv_channels=160, hidden=160, layers=2)  # configs/demo-asr.yaml
    cfg = RunConfig.model_validate({
        "name": "bench", "recipe": "asr", "model": mcfg.model_dump(),
        "request": {"purpose": "research", "requester": "bench", "collections": ["x"]},
        "train": {"steps": 10**6, "batch_size": args.batch, "log_every": 50, "mlflow": False}})
    if args.model == "wav2vec2":
        data, make = Waveforms(32, vocab), lambda: wav2vec2_base(vocab)
    else:
        data, make = Synthetic(64, mcfg.n_mels, vocab), lambda: CTCModel(mcfg, vocab)
    sampler = StepSampler(len(data), args.batch, 0, 1, seed=0)
    device = torch.device("cpu")

    # Plain loop: the same model init, the same optimizer (AdamW, same groups, fused as the engine picks on CPU).
    torch.manual_seed(0)
    plain = make()
    plain_opt = build_optimizer(plain, cfg.train, device)
    plain_sched = torch.optim.lr_scheduler.LambdaLR(plain_opt, lambda s: min(1.0, (s + 1) / 50))

    def plain_step(step: int) -> None:
        plain.train()
        batch = recipe.collate([data[i] for i in sampler.indices(step)])
        loss, _ = recipe.loss(plain, batch)
        plain_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(plain.parameters(), cfg.train.grad_clip)
        plain_opt.step()
        plain_sched.step()

    # Engine: its components, as the trainer builds them.
    torch.manual_seed(0)
    model = parallelize(make(), cfg.train, device)
    opt = build_optimizer(model, cfg.train, device)
    # The trainer's data path (workers 0 on CPU): each micro-batch collated under its own seed, in order.
    batches = dataloading.StepBatches(data, sampler, recipe.collate, cfg.train.seed, 0)
    feed = iter(dataloading.loader(batches, 0, 10**6, cfg.data, device, 0))
    loop = Loop(recipe, model, feed, opt, build_scheduler(opt, cfg.train), cfg, device)
    meter = Meter(tmp, cfg.train.steps, device, None, None)
    log = RankLog(tmp, 0)
    vote = preempt.StopVote(preempt.PreemptWatch.from_env(), None)  # the per-step stop vote, as the trainer casts it
    vote.cast()

    def engine_step(step: int) -> None:
        loop.run(step, meter, log)
        vote.decide()

    for warm in range(3):
        plain_step(warm)
        engine_step(warm)
    # Wall time, and CPU time of this process (all its threads): on a shared machine the second is what other
    # people's jobs disturb least.
    wall: dict[str, list[float]] = {"plain": [], "engine": []}
    cpu: dict[str, list[float]] = {"plain": [], "engine": []}
    step = 3
    for _ in range(args.blocks):
        for name, fn in (("plain", plain_step), ("engine", engine_step)):
            for _ in range(args.steps):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(step)
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
                step += 1
    vote.drain()
    stop.clear()
    dist.destroy_process_group()
    med = {k: {n: statistics.median(v[n]) for n in v} for k, v in (("wall", wall), ("cpu", cpu))}
    print(json.dumps({"metric": "engine overhead", "model": args.model,
                      "wall_s_per_step": {n: round(x, 5) for n, x in med["wall"].items()},
                      "wall_ratio": round(med["wall"]["engine"] / med["wall"]["plain"], 4),
                      "cpu_s_per_step": {n: round(x, 5) for n, x in med["cpu"].items()},
                      "cpu_ratio": round(med["cpu"]["engine"] / med["cpu"]["plain"], 4),
                      "steps_each": len(wall["plain"]), "batch": args.batch, "threads": args.threads}))


if __name__ == "__main__":
    main()
