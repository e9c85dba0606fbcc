"""The (ε, δ) of site-level differential privacy: clipped site updates, Gaussian noise on their aggregate."""

from __future__ import annotations

import math


def epsilon(noise_multiplier: float, rounds: int, delta: float, sample_rate: float = 1.0) -> float:
    """ε after ROUNDS noisy aggregations (RDP accountant of opacus); every listed site is asked each round, so
    the sampling rate is 1 and there is no amplification. Infinite without noise."""
    if noise_multiplier <= 0 or rounds <= 0:
        return math.inf if rounds > 0 else 0.0
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, rounds)]
    return float(acc.get_epsilon(delta))
