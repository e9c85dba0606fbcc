"""Byte-mask dropout: drop rate, unbiased scaling, gradient through the same mask, eval identity, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hearthkit.engine.dropout import Dropout, byte_mask, dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.3, 0.5])
def test_drops_the_rounded_share_and_keeps_the_mean(p: float):
    torch.manual_seed(0)
    x = torch.ones(200, 1000)
    y = dropout(x, p)
    cut = round(p * 256)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - cut / 256) < 0.005  # 200k draws: sd of the share is ~0.001
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 256 / (256 - cut)))
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased: E[y] = x


def test_gradient_uses_the_forward_mask_and_scale():
    torch.manual_seed(1)
    x = torch.randn(64, 30, 16, requires_grad=True)
    y = dropout(x, 0.25)
    g = torch.randn_like(y)
    y.backward(g)
    kept = y.detach() != 0
    scale = 256 / (256 - 64)
    assert torch.allclose(x.grad, g * kept * scale)
    assert torch.allclose(y.detach(), x.detach() * kept * scale)


def test_eval_mode_and_zero_p_are_the_identity():
    x = torch.randn(8, 8)
    drop = Dropout(0.3).eval()
    assert drop(x) is x
    assert dropout(x, 0.0) is x
    assert dropout(x, 0.5, training=False) is x


def test_same_seed_same_mask_and_masks_differ_between_calls():
    torch.manual_seed(7)
    a1, _ = byte_mask(torch.Size([32, 64]), 0.2)
    a2, _ = byte_mask(torch.Size([32, 64]), 0.2)
    torch.manual_seed(7)
    b1, _ = byte_mask(torch.Size([32, 64]), 0.2)
    assert torch.equal(a1, b1) and not torch.equal(a1, a2)


def test_odd_sizes_and_p_near_one():
    torch.manual_seed(3)
    y = dropout(torch.ones(3, 5, 7), 0.5)  # 105 elements: not a multiple of the 8 bytes per draw
    assert y.shape == (3, 5, 7) and set(y.unique().tolist()) <= {0.0, 2.0}
    assert dropout(torch.ones(100), 1.0).eq(0).all()  # torch's own dropout beyond the byte range
    with pytest.raises(ValueError, match="between 0 and 1"):
        Dropout(1.5)


def test_no_state_so_checkpoints_of_nn_dropout_models_load():
    ours = nn.Sequential(nn.Linear(4, 4), Dropout(0.1))
    theirs = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.1))
    ours.load_state_dict(theirs.state_dict())
    assert list(ours.state_dict()) == list(theirs.state_dict())
