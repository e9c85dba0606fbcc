"""torch.compile for variable-length batches: one compiled graph, forward and backward, for every length.

The data path marks each batch's length dimension dynamic (dataloading.mark_length_dims); dynamo's own guards then
hold for every length. Inductor (torch 2.13, CPU) adds two guards of its own that pin the length to the first
batch's value, so each new length compiled a new graph until the recompile limit (8) sent the model back to eager:

1. Layout optimisation stores a CPU graph's 4-D activations channels-last (on CUDA it is skipped for dynamic
   shapes). AOTAutograd compiles the backward with those saved activations' strides as plain numbers, which guards
   the length (e.g. 2*((frames - 3)//4) == 280). Turned off for dynamic lengths (DYNAMIC_INDUCTOR_OPTIONS).
2. The lowering of a convolution's backward turns the gradient's strides into integers to pick a memory order
   (guard_int_seq), which guards ((frames - 3)//4) == 140 (on any device: the code path is the one CUDA takes for
   dynamic shapes too). That lowering ends in ATen's kernel unless max-autotune offers GPU templates, so for
   symbolic sizes hearthkit registers an inductor user lowering that calls ATen's kernel directly, without the
   guard; static sizes return None, which hands the op back to inductor's own lowering.
"""

from __future__ import annotations

import torch
from torch import nn

DYNAMIC_INDUCTOR_OPTIONS = {"layout_optimization": False}


def compile_model(model: nn.Module, dynamic_lengths: bool = True, backend: str = "inductor") -> nn.Module:
    """MODEL under torch.compile; with DYNAMIC_LENGTHS (lengths marked dynamic by the data path) inductor keeps
    activations in their eager layout and lowers convolution gradients without pinning the length."""
    options = None
    if dynamic_lengths and backend == "inductor":
        options = DYNAMIC_INDUCTOR_OPTIONS
        register_conv_backward_lowering()
    return torch.compile(model, backend=backend, options=options)


def register_conv_backward_lowering() -> bool:
    """Register the length-preserving lowering of aten.convolution_backward (once per process); False where this
    torch's inductor lacks the hooks it needs, or another lowering holds the op (nothing is changed then)."""
    try:
        from torch._inductor.kernel import conv
        from torch._inductor.lowering import user_lowerings
    except ImportError:
        return False
    fallback = getattr(conv, "aten_convolution_backward_fallback", None)
    op = torch.ops.aten.convolution_backward.default
    if fallback is None:
        return False
    if getattr(user_lowerings.get(op), "hearthkit", False):
        return True
    if op in user_lowerings:  # someone else's lowering: leave it alone
        return False

    def lower(grad_out, input, weight, *args, **kwargs):
        """ATen's kernel for a convolution gradient with symbolic sizes; None (inductor's lowering) otherwise."""
        if not any(getattr(s, "free_symbols", None) for s in [*grad_out.get_size(), *input.get_size()]):
            return None
        return fallback(grad_out, input, weight, *args, **kwargs)

    lower.hearthkit = True  # type: ignore[attr-defined]
    user_lowerings[op] = lower
    return True
