"""scripts/torchgeo_resnet_to_hf.py: torchgeo/timm ResNet weights -> a transformers ResNet folder, by key names alone.

torchgeo and torchvision cannot be imported here, so the reference is a torchvision-layout ResNet written out below
(its module names are torchvision's, which timm and torchgeo's ResNets keep); random weights, 13 input bands.
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from torch import nn

from hearthkit.lineage.base import check_base_folder
from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("convert", ROOT / "scripts" / "torchgeo_resnet_to_hf.py")
convert = importlib.util.module_from_spec(spec)
spec.loader.exec_module(convert)


def bn(c: int) -> nn.BatchNorm2d:
    b = nn.BatchNorm2d(c)
    b.running_mean.normal_()  # non-trivial statistics, so a misplaced tensor shows in the output
    b.running_var.uniform_(0.5, 2)
    b.weight.data.normal_(1, 0.1)
    b.bias.data.normal_(0, 0.1)
    return b


class Basic(nn.Module):
    expansion = 1

    def __init__(self, cin: int, c: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False), bn(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, 1, 1, bias=False), bn(c)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), bn(c))
                           if stride != 1 or cin != c else None)

    def forward(self, x):
        y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, c: int, stride: int):
        super().__init__()
        out = c * 4
        self.conv1, self.bn1 = nn.Conv2d(cin, c, 1, bias=False), bn(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, stride, 1, bias=False), bn(c)
        self.conv3, self.bn3 = nn.Conv2d(c, out, 1, bias=False), bn(out)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), bn(out))
                           if stride != 1 or cin != out else None)

    def forward(self, x):
        y = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (self.downsample(x) if self.downsample is not None else x))


class TVResNet(nn.Module):
    """torchvision's ResNet layout (conv1, bn1, maxpool, layer1-4, fc)."""

    def __init__(self, block, depths, widths, bands: int, stem: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(bands, stem, 7, 2, 3, bias=False), bn(stem)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem
        for i, (d, w) in enumerate(zip(depths, widths, strict=True)):
            blocks = []
            for j in range(d):
                blocks.append(block(cin, w, 2 if (j == 0 and i > 0) else 1))
                cin = w * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


@pytest.mark.parametrize("block,depths", [(Bottleneck, [2, 1, 2, 1]), (Basic, [1, 2, 1, 1])])
@torch.no_grad()
def test_torchvision_layout_resnet_converts_to_transformers_with_equal_features(block, depths, tmp_path):
    torch.manual_seed(0)
    ref = TVResNet(block, depths, [4, 8, 8, 16], bands=13, stem=8).eval()
    weights = tmp_path / "s2.pth"
    torch.save({f"model.{k}": v for k, v in ref.state_dict().items()}, weights)  # a Lightning-style prefix
    out = tmp_path / "hf"
    assert convert.main([str(weights), str(out)]) == 0
    assert check_base_folder(out) == "resnet"  # registrable as a base
    assert json.loads((out / "hearthkit_bands.json").read_text())["backbone_bands"] == convert.S2_BANDS
    from transformers import ResNetModel

    model = ResNetModel.from_pretrained(str(out), local_files_only=True).eval()
    x = torch.randn(2, 13, 64, 64)
    assert torch.allclose(model(x).last_hidden_state, ref(x), atol=1e-5)


def test_weights_of_another_layout_or_band_count_are_refused_in_one_line(tmp_path, capsys):
    torch.save({"stem.weight": torch.zeros(8, 13, 7, 7)}, tmp_path / "odd.pth")
    assert convert.main([str(tmp_path / "odd.pth"), str(tmp_path / "x")]) == 1
    assert "not a tensor of a torchvision/timm ResNet" in capsys.readouterr().err
    torch.manual_seed(0)
    torch.save(TVResNet(Basic, [1, 1, 1, 1], [4, 4, 8, 8], bands=4, stem=4).state_dict(), tmp_path / "rgbn.pth")
    assert convert.main([str(tmp_path / "rgbn.pth"), str(tmp_path / "y")]) == 1
    assert "names 13 bands but the weights take 4 channels" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
