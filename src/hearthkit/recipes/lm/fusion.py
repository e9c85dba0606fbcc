"""A character-level lm model as the shallow-fusion scorer of CTC beam search (`decode.lm.plugin: lm`)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from hearthkit.errors import HearthError
from hearthkit.recipes.lm.model import GPT
from hearthkit.recipes.lm.recipe import CharUnits


class FusionScorer:
    """log P(text | context) under a char GPT; one forward pass per distinct context, cached.

    Beam search asks for the next character of many prefixes that share contexts, so the distribution over
    the next unit is kept per context string (a beam of width B over T frames needs at most B·T of them).
    """

    def __init__(self, model: GPT, units: CharUnits, cache_size: int = 50_000):
        self.model, self.units = model.eval(), units
        self.cache: dict[str, torch.Tensor] = {}
        self.cache_size = cache_size

    def next_log_probs(self, context: str) -> torch.Tensor:
        """Log-probabilities (V,) of the unit after CONTEXT (a text start: the item separator before it)."""
        got = self.cache.get(context)
        if got is None:
            ids = ([self.units.SEP] + self.units.encode(context))[-self.model.cfg.block_size:]
            with torch.no_grad():
                got = F.log_softmax(self.model(torch.tensor([ids])).float()[0, -1], dim=-1)
            if len(self.cache) >= self.cache_size:  # one utterance's contexts rarely reach this; keep memory flat
                self.cache.clear()
            self.cache[context] = got
        return got

    def __call__(self, context: str, text: str) -> float:
        """Natural-log probability that TEXT follows CONTEXT."""
        total = 0.0
        for ch in text:
            total += float(self.next_log_probs(context)[self.units.encode(ch)[0]])
            context += ch
        return total

    def final(self, context: str) -> float:
        """Natural-log probability that the text ends after CONTEXT (the separator comes next)."""
        return float(self.next_log_probs(context)[self.units.SEP])


def load_scorer(name_or_path: Path) -> FusionScorer:
    """The scorer of published lm model NAME_OR_PATH (a workspace model name or a models/NAME folder)."""
    from hearthkit.recipes.load import load_model_dir, resolve_model

    folder = resolve_model(str(name_or_path), None)  # refuses withdrawn or superseded models
    _, _, prep, model = load_model_dir(folder, "lm")
    if not isinstance(prep["units"], CharUnits):
        raise HearthError(f"{folder.name}: shallow fusion needs a character-level lm model (model.units: char); "
                          "this one uses sentencepiece units")
    return FusionScorer(model, prep["units"])
