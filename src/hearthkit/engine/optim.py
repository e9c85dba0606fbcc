"""AdamW (fused where the device has the kernel) and the learning-rate schedule."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hearthkit.engine.config import TrainConfig
from hearthkit.engine.parallel import unwrap


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and embeddings; never biases or norm gains (1-D tensors)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def layer_groups(model: nn.Module, weight_decay: float, layer_decay: float, lr: float) -> list[dict]:
    """Parameter groups with layer-wise learning-rate decay (BEiT, ELECTRA): deeper layers learn faster.

    The model numbers its parameters (`lr_layer(name) -> (depth, deepest)`, e.g. recipes/hf.py HFModule); a group
    per (depth, decayed or not) carries its own `lr`, which the schedule scales like any other.
    """
    inner = unwrap(model)
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in inner.named_parameters():
        if not p.requires_grad:
            continue
        depth, deepest = inner.lr_layer(name)
        decay = p.dim() >= 2
        g = groups.setdefault((depth, decay), {"params": [], "weight_decay": weight_decay if decay else 0.0,
                                               "lr": lr * layer_decay ** (deepest - depth)})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def use_fused(train: TrainConfig, device: torch.device) -> bool:
    """Fused AdamW where it is known to work: CUDA, or CPU with replicated (non-sharded) weights."""
    if train.fused is not None:
        return train.fused
    return device.type == "cuda" or train.parallel == "ddp"


def build_optimizer(model: nn.Module, train: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over MODEL's parameters, as TRAIN says."""
    if train.layer_decay < 1.0 and hasattr(unwrap(model), "lr_layer"):
        groups = layer_groups(model, train.weight_decay, train.layer_decay, train.lr)
    else:
        groups = [g for g in param_groups(model, train.weight_decay) if g["params"]]
    fused = use_fused(train, device)
    return torch.optim.AdamW(groups, lr=train.lr, betas=train.betas, fused=fused or None,
                             foreach=None if fused else True)


def lr_factor(train: TrainConfig) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at each step: linear warm-up, then the chosen shape."""
    warmup, total, floor = train.warmup, train.steps, train.min_lr_ratio

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if train.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if train.schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return f


def build_scheduler(opt: torch.optim.Optimizer, train: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR of `lr_factor`; its state (last step) is saved with each checkpoint."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lr_factor(train))
