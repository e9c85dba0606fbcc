"""DDP scaling on this machine: training throughput of 2 torchrun workers vs 1, same model, data and engine loop.

Each launch is a real `torchrun --standalone` running the engine's `Loop` (DDP over gloo, one thread per worker)
on the asr model at demo size with synthetic log-mel batches of 8 per worker (weak scaling: the global batch grows
with the workers). Launches alternate 1, 2, 1, 2, ... so the shared machine's noise falls on both; the median of each
is compared. Prints one JSON line with samples/s of each and the ratio (2 workers / 1; ideal 2.0 on 2 free cores).

Example: python bench/ddp_scaling.py --repeats 3 --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULT = "RESULT "


def worker(steps: int, batch: int) -> None:
    """Under torchrun: train STEPS timed steps (after 3 warm-up steps) and print global samples/s from rank 0."""
    import torch
    import torch.distributed as dist

    from hearthkit.engine.config import DataConfig, RunConfig
    from hearthkit.engine.dataloading import StepBatches, loader
    from hearthkit.engine.faults import RankLog
    from hearthkit.engine.metrics import Meter
    from hearthkit.engine.optim import build_optimizer, build_scheduler
    from hearthkit.engine.parallel import init_distributed, parallelize
    from hearthkit.engine.sampler import StepSampler
    from hearthkit.engine.trainer import Loop
    from hearthkit.recipes.asr.model import ASRConfig, CTCModel
    from hearthkit.recipes.asr.recipe import ASRRecipe

    sys.path.insert(0, str(Path(__file__).parent))
    from engine_overhead import Synthetic

    torch.set_num_threads(1)
    mcfg = ASRConfig(conv_channels=160, hidden=160, layers=2)
    cfg = RunConfig.model_validate({
        "name": "bench", "recipe": "asr", "model": mcfg.model_dump(),
        "request": {"purpose": "research", "requester": "bench", "collections": ["x"]},
        "train": {"steps": 10**6, "batch_size": batch, "log_every": 10**6, "mlflow": False},
        "launch": {"backend": "gloo"}})
    device = torch.device("cpu")
    init_distributed(cfg.launch, device)
    rank, world = dist.get_rank(), dist.get_world_size()
    data = Synthetic(128, mcfg.n_mels, 30)
    torch.manual_seed(0)
    model = parallelize(CTCModel(mcfg, 30), cfg.train, device)
    opt = build_optimizer(model, cfg.train, device)
    recipe = ASRRecipe()
    batches = StepBatches(data, StepSampler(len(data), batch, rank, world, 0), recipe.collate, 0, rank)
    feed = iter(loader(batches, 0, 3 + steps, DataConfig(workers=0), device, 0))  # the engine's data path
    loop = Loop(recipe, model, feed, opt, build_scheduler(opt, cfg.train), cfg, device)
    tmp = Path(os.environ["BENCH_DIR"])
    meter, log = Meter(tmp, cfg.train.steps, device, None, None), RankLog(tmp, rank)
    for s in range(3):
        loop.run(s, meter, log)
    dist.barrier()
    t0 = time.perf_counter()
    for s in range(3, 3 + steps):
        loop.run(s, meter, log)
    dist.barrier()
    dt = time.perf_counter() - t0
    if rank == 0:
        print(RESULT + json.dumps({"workers": world, "samples_per_s": steps * batch * world / dt}), flush=True)
    dist.destroy_process_group()


def launch(nproc: int, steps: int, batch: int) -> float:
    """One torchrun launch of NPROC workers; its global samples/s."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               __file__, "--worker", f"--steps={steps}", f"--batch={batch}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1", BENCH_DIR=tmp)).stdout
    line = next(x for x in out.splitlines() if x.startswith(RESULT))
    return json.loads(line[len(RESULT):])["samples_per_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.steps, args.batch)
        return
    runs: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for n in (1, 2):
            runs[n].append(launch(n, args.steps, args.batch))
    one, two = statistics.median(runs[1]), statistics.median(runs[2])
    print(json.dumps({"metric": "DDP scaling 2 vs 1 workers", "samples_per_s_1": round(one, 2),
                      "samples_per_s_2": round(two, 2), "ratio": round(two / one, 3), "repeats": args.repeats,
                      "runs_1": [round(x, 2) for x in runs[1]], "runs_2": [round(x, 2) for x in runs[2]]}))


if __name__ == "__main__":
    main()
