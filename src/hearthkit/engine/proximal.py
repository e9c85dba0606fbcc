"""FedProx's proximal term: μ/2·‖w − w₀‖² over the trainable parameters, w₀ the weights the run started from."""

from __future__ import annotations

import torch
from torch import nn


class Proximal:
    """μ/2·‖w − w₀‖², w₀ a frozen copy of MODEL's trainable parameters when made (on their device).

    Made after the parent model (a federation's global model) is loaded and before a checkpoint is resumed, so a
    resumed run keeps pulling towards the weights the round started from, not towards the checkpoint's.
    """

    def __init__(self, model: nn.Module, mu: float) -> None:
        self.mu = mu
        self.pairs = [(p, p.detach().clone()) for p in model.parameters() if p.requires_grad]

    def __call__(self) -> torch.Tensor:
        """The term, differentiable in the live parameters (float32 whatever the autocast)."""
        total = sum(((p.float() - a.float()) ** 2).sum() for p, a in self.pairs)
        return 0.5 * self.mu * total

    def distance(self) -> float:
        """‖w − w₀‖ now (for logs and tests)."""
        with torch.no_grad():
            return float(sum(((p.float() - a.float()) ** 2).sum() for p, a in self.pairs) ** 0.5)
