"""torch.compile on variable-length audio (issue 21, defect 3): the engine's batch hand-over marks each batch's length
dimension dynamic, so ten steps of ten different lengths compile the conformer once, not once per new length.

The first test uses dynamo's "eager" backend for the whole conformer: dynamo traces and guards as it does for
inductor, but no kernels are generated (inductor's C++ build of the whole model takes minutes on this CPU).
Unmarked, the same loop compiles twice (the first length statically, then a dynamic graph at the second length).
Inductor adds guards of its own (engine/compiling.py): the second test builds real inductor kernels for the
conformer's convolutions only, which show both.
"""

from __future__ import annotations

import copy

import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

from hearthkit.engine.compiling import compile_model
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


class FrontEnd(nn.Module):
    """The conformer's convolutional subsampling, called on a batch's (B, T, n_mels) features as the model does."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.subsample = model.subsample

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.subsample(feats[:, None])


def test_inductor_compiles_the_conv_front_end_once_for_every_length(tmp_path, monkeypatch):
    """With inductor itself (the backend users run; its C++ kernels really built, in tmp_path): three lengths of
    training steps through the conformer's convolutions compile one graph. Before engine/compiling.py, inductor's
    CPU layout optimisation (channels-last saved activations, restrided by number for the backward) and its
    convolution-backward lowering (strides turned into integers) each pinned the length to the first batch's, so
    every new length compiled a new graph (3 here; 8 in 8 steps in bench/asr_throughput.py --compiled-vs-eager)."""
    import torch._inductor.config as inductor_config

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr(inductor_config, "fx_graph_cache", False)  # no graph compiled elsewhere may answer for it
    monkeypatch.setattr(inductor_config, "compile_threads", 1)  # no pool of compile processes for three kernels
    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    cfg = ASRConfig(arch="conformer", n_mels=16, conv_channels=4, d_model=8, heads=2, layers=1, conv_kernel=3)
    eager = FrontEnd(build(cfg, 6))
    compiled = compile_model(copy.deepcopy(eager), dynamic_lengths=True)
    lengths = []
    for step in range(3):
        batch = to_device({"feats": torch.randn(2, 40 + 9 * step, 16)}, torch.device("cpu"), compiled=True)
        for module in (eager, compiled):
            module.zero_grad()
            module(batch["feats"]).square().mean().backward()
        for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
            torch.testing.assert_close(q.grad, p.grad, msg=f"{name} gradient at length {batch['feats'].shape[1]}")
        lengths.append(batch["feats"].shape[1])
    torch._dynamo.reset()
    assert len(set(lengths)) == 3
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
