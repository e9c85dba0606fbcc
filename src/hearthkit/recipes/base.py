"""What a recipe provides to the engine: model, data, loss, evaluation."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from hearthkit.data.loader import GovernedReader
from hearthkit.errors import HearthError
from hearthkit.governance.manifest import Manifest


class Recipe(ABC):
    """A model family and its data handling; the engine stays generic."""

    name: str
    ModelConfig: type[BaseModel]

    @abstractmethod
    def prepare(self, cfg: BaseModel, train_entries: list[dict], out: Path, reader: GovernedReader | None = None,
                manifest: Manifest | None = None, parent: Path | None = None) -> dict:
        """Fit what comes from training data only (e.g. a vocabulary, band statistics); save under OUT; return it.

        READER reads the training items' bytes (governed, logged) for recipes that need pixels or samples;
        MANIFEST gives excluded items' reasons; PARENT is the folder of the model the run initialises from
        (`init_from`), whose preparation a recipe keeps where its weights depend on it (a vocabulary).
        """

    @abstractmethod
    def load_prep(self, folder: Path) -> dict:
        """Load what `prepare` saved under FOLDER."""

    @abstractmethod
    def build_model(self, cfg: BaseModel, prep: dict) -> nn.Module:
        """A fresh model for CFG and PREP."""

    def initialise(self, model: nn.Module, cfg: BaseModel, prep: dict) -> None:
        """Set MODEL's starting weights before training (default: keep the fresh ones)."""
        return None

    @abstractmethod
    def dataset(self, cfg: BaseModel, prep: dict, entries: list[dict], reader: GovernedReader,
                train: bool) -> torch.utils.data.Dataset:
        """Examples of ENTRIES, read through the governed READER."""

    @abstractmethod
    def collate(self, batch: list[Any]) -> dict:
        """Pad a list of examples into a batch."""

    @abstractmethod
    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        """Loss of BATCH and counts for throughput (samples, plus the recipe's natural unit)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, cfg: BaseModel, prep: dict, entries: list[dict],
                 reader: GovernedReader) -> list[dict]:
        """Per-item results (reference, hypothesis and the item's metadata) for disaggregated scoring."""

    def flops_per_sample(self, cfg: BaseModel, model: nn.Module) -> float | None:
        """Training FLOPs (forward + backward) of one sample, for MFU; None where unknown."""
        return None

    def check_parent_shape(self, cfg: BaseModel, parent: Path, shape: tuple[str, ...]) -> None:
        """Refuse CFG unless it keeps the parent model's SHAPE fields, which its weights depend on."""
        path = parent / "config.json"
        try:
            raw = json.loads(path.read_text(encoding="utf-8")).get("model") or {}
            theirs = type(cfg).model_validate(raw)
        except (OSError, ValueError, AttributeError):  # unreadable, not JSON, or a model section of another shape
            raise HearthError(f"init_from model {parent.name}: {path} is not a readable {self.name} model config; "
                              "it cannot be continued from") from None
        for field in shape:
            if getattr(cfg, field) != getattr(theirs, field):
                raise HearthError(f"model.{field}: {getattr(cfg, field)!r} here but {getattr(theirs, field)!r} in "
                                  f"init_from model {parent.name}; keep the parent's value to continue from it")

    def init_from_parent(self, model: nn.Module, parent_dir: Path, prep: dict) -> str:
        """Copy the parent model's weights wherever name and shape match (a recipe may do better); say what."""
        from safetensors.torch import load_file

        parent = load_file(str(parent_dir / "model.safetensors"))
        own = model.state_dict()
        same = {k: v for k, v in parent.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(same, strict=False)
        return f"initialised {len(same)}/{len(own)} tensors from {parent_dir.name}"

    def calibrate(self, model: nn.Module, cfg: BaseModel, prep: dict, train_entries: list[dict],
                  reader: GovernedReader, out: Path) -> dict:
        """After training, fit settings on held-back parts of the training items (e.g. a threshold); save under OUT.

        Returns what to merge into PREP. The default fits nothing.
        """
        return {}

    metric_names: tuple[str, ...] = ()
    groups: tuple[str, ...] = ("speaker", "dialect", "gender")  # evaluation is disaggregated by these

    def group_columns(self, cfg: BaseModel) -> list[str]:
        """Item metadata columns the evaluation is disaggregated by (default: the recipe's `groups`)."""
        return list(self.groups)
