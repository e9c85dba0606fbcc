"""What a recipe provides to the engine: model, data, loss, evaluation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel
from torch import nn

from hearthkit.data.loader import GovernedReader


class Recipe(ABC):
    """A model family and its data handling; the engine stays generic."""

    name: str
    ModelConfig: type[BaseModel]

    @abstractmethod
    def prepare(self, cfg: BaseModel, train_entries: list[dict], out: Path) -> dict:
        """Fit what comes from training data only (e.g. a vocabulary); save under OUT; return it."""

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

    metric_names: tuple[str, ...] = ()
