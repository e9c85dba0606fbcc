"""torch.compile on variable-length audio (issue 21, defect 3): the engine's batch hand-over marks each batch's length
dimension dynamic, so ten steps of ten different lengths compile the conformer once, not once per new length.

torch.compile here uses dynamo's "eager" backend: dynamo traces, guards and recompiles exactly as it does for
inductor (shape guards decide), but no kernels are generated (inductor's C++ build takes minutes on this CPU).
Unmarked, the same loop compiles twice (the first length statically, then a dynamic graph at the second length).
"""

from __future__ import annotations

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from hearthkit.engine.dataloading import to_device
from hearthkit.recipes import get_recipe
from hearthkit.recipes.asr.model import ASRConfig, build


def test_ten_lengths_compile_the_conformer_once():
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    cfg = ASRConfig(arch="conformer", n_mels=16, conv_channels=4, d_model=8, heads=2, layers=1, conv_kernel=3,
                    dropout=0.1)
    compiled = torch.compile(build(cfg, 6), backend="eager")
    recipe = get_recipe("asr")
    lengths = []
    for step in range(10):
        frames = [40 + 7 * step, 33 + 5 * step]  # every step a new longest utterance, as in real training
        batch = recipe.collate([{"feats": torch.randn(n, 16), "tokens": torch.tensor([1, 2, 3])} for n in frames])
        batch = to_device(batch, torch.device("cpu"), compiled=True)  # what Loop.step hands the model
        loss, _ = recipe.loss(compiled, batch)
        loss.backward()
        lengths.append(batch["feats"].shape[1])
    assert len(set(lengths)) == 10
    assert counters["frames"]["total"] == 1 and counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
