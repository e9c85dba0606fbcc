"""A character n-gram language model (interpolated Witten-Bell) for shallow fusion in CTC beam search."""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

BOS, EOS = "\x02", "\x03"  # sentence start/end marks; never in normalised transcripts


class CharNgramLM:
    """P(char | previous n-1 chars), Witten-Bell smoothed down to a uniform distribution over the alphabet."""

    def __init__(self, order: int, counts: dict[str, dict[str, int]], alphabet: list[str]):
        self.order, self.counts, self.alphabet = order, counts, alphabet
        self._totals = {h: sum(c.values()) for h, c in counts.items()}
        self._types = {h: len(c) for h, c in counts.items()}
        self._cache: dict[tuple[str, str], float] = {}

    @classmethod
    def fit(cls, texts: list[str], order: int = 5) -> CharNgramLM:
        """Count every history of length 0..ORDER-1 in TEXTS (already normalised)."""
        counts: dict[str, Counter] = defaultdict(Counter)
        alphabet = sorted({c for t in texts for c in t} | {EOS})
        for t in texts:
            s = BOS * (order - 1) + t + EOS
            for i in range(order - 1, len(s)):
                for k in range(order):
                    counts[s[i - k:i]][s[i]] += 1
        return cls(order, {h: dict(c) for h, c in counts.items()}, alphabet)

    def with_order(self, order: int) -> CharNgramLM:
        """The same counts used up to ORDER (at most the fitted order): a lower-order model, exactly as if fitted."""
        if order > self.order:
            raise ValueError(f"order {order} is above the fitted order {self.order}")
        return self if order == self.order else CharNgramLM(order, self.counts, self.alphabet)

    def prob(self, history: str, char: str) -> float:
        """Interpolated Witten-Bell probability of CHAR after HISTORY."""
        p = 1.0 / (len(self.alphabet) + 1)  # +1: unseen characters keep a little mass
        for k in range(0, self.order):
            h = history[len(history) - k:] if k else ""
            if len(h) < k or h not in self.counts:
                break
            n, t = self._totals[h], self._types[h]
            p = (self.counts[h].get(char, 0) + t * p) / (n + t)
        return p

    def logprob(self, history: str, char: str) -> float:
        """Natural log of `prob`, with the history padded by sentence-start marks."""
        h = (BOS * (self.order - 1) + history)[-(self.order - 1):] if self.order > 1 else ""
        key = (h, char)
        if key not in self._cache:
            self._cache[key] = math.log(self.prob(h, char))
        return self._cache[key]

    def __call__(self, context: str, text: str) -> float:
        """The scorer interface of decode.LMScorer: log P(TEXT follows CONTEXT)."""
        total = 0.0
        for c in text:
            total += self.logprob(context, c)
            context += c
        return total

    def final(self, context: str) -> float:
        """log P(end of sentence | CONTEXT)."""
        return self.logprob(context, EOS)

    def perplexity(self, texts: list[str]) -> float:
        """Per-character perplexity of TEXTS (end marks included)."""
        lp, n = 0.0, 0
        for t in texts:
            lp += self(t[:0], t) + self.final(t)
            n += len(t) + 1
        return math.exp(-lp / max(1, n))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"order": self.order, "alphabet": self.alphabet, "counts": self.counts},
                                   ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> CharNgramLM:
        d = json.loads(path.read_text(encoding="utf-8"))
        return cls(d["order"], d["counts"], d["alphabet"])
