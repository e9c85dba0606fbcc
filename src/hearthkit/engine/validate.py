"""Validation loss on training-side items held out of training (split.valid_fraction).

It lets settings be compared on data that is neither trained on nor the test set. Each rank runs its share
through its own full copy of the weights (DDP replicates them; no collective inside the forward pass, so uneven
shares cannot hang), then one all-reduce sums the losses.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from hearthkit.engine.config import TrainConfig
from hearthkit.engine.parallel import autocast
from hearthkit.recipes.base import Recipe


def valid_loss(recipe: Recipe, model: nn.Module, data: torch.utils.data.Dataset, train: TrainConfig,
               device: torch.device, group: dist.ProcessGroup | None = None) -> float:
    """Mean loss over DATA (batch losses weighted by their examples), computed on all ranks together.

    The sums are CPU tensors: GROUP must take them (a gloo group; NCCL's takes CUDA tensors only)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = list(range(rank, len(data), world))
    if hasattr(data, "lengths"):  # batches of alike length carry little padding
        lengths = data.lengths()
        mine.sort(key=lambda i: lengths[i])
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for b in range(0, len(mine), train.batch_size):
            idx = mine[b:b + train.batch_size]
            batch = recipe.collate([data[i] for i in idx])
            batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast(train, device):
                loss, _ = recipe.loss(model, batch)
            sums += torch.tensor([float(loss) * len(idx), len(idx)], dtype=torch.float64)
    model.train(was_training)
    dist.all_reduce(sums, group=group)
    return float(sums[0] / sums[1]) if sums[1] else float("nan")
