"""CPU training-step time of the mt Transformer with hearthkit's byte-mask dropout against torch's nn.Dropout.

Baseline in the same invocation: the same model and weights with every hearthkit Dropout swapped back for
`torch.nn.Dropout`, and the same model with no dropout at all (the floor). Steps alternate between the three
so that load on a shared machine hits them alike; the median step time of each is printed with ratios.

Example: .venv/bin/python bench/cpu_dropout.py --steps 60 --dropout 0.2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from hearthkit.engine.dropout import Dropout
from hearthkit.recipes.mt.model import MTConfig, Seq2Seq


def swapped(model: nn.Module, make) -> nn.Module:
    """A copy of MODEL with each hearthkit Dropout replaced by make(p)."""
    out = copy.deepcopy(model)
    for mod in list(out.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, Dropout):
                setattr(mod, name, make(child.p))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--vocab", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = MTConfig(pairs=["es-xx"], vocab_size=args.vocab, d_model=args.d_model, n_heads=4, enc_layers=args.layers,
                   dec_layers=args.layers, d_ff=4 * args.d_model, dropout=args.dropout)
    ours = Seq2Seq(cfg, args.vocab)
    models = {"hearthkit Dropout": ours, "torch nn.Dropout": swapped(ours, nn.Dropout),
              "no dropout (floor)": swapped(ours, lambda p: nn.Identity())}
    opts = {k: torch.optim.AdamW(m.parameters(), 1e-3) for k, m in models.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    lengths = [12, 18, 24, 30, 40]  # the bucketed batch shapes of AmericasNLP pairs at max_tokens 64
    for step in range(args.steps + 3):
        L = lengths[step % len(lengths)]
        src, tgt = torch.randint(4, args.vocab, (args.batch, L)), torch.randint(4, args.vocab, (args.batch, L))
        for k, m in models.items():
            t0 = time.perf_counter()
            loss = F.cross_entropy(m(src, tgt).flatten(0, 1), tgt.flatten())
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if step >= 3:  # warm-up steps not counted
                times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["torch nn.Dropout"])
    print(f"mt model d={args.d_model} layers={args.layers}+{args.layers} batch={args.batch} dropout={args.dropout}, "
          f"{args.threads} threads, {args.steps} steps each (median)")
    for k, ts in times.items():
        med = statistics.median(ts)
        print(f"  {k:20s} {1000 * med:7.1f} ms/step   speed vs nn.Dropout x{base / med:.2f}")


if __name__ == "__main__":
    main()
