"""The step sampler: batches are a pure function of (seed, step, rank); length bucketing cuts padding."""

from __future__ import annotations

import random

import pytest

from hearthkit.engine.sampler import StepSampler


def _epoch(sampler_for, steps: int, world: int) -> list[list[int]]:
    return [[i for r in range(world) for i in sampler_for(r).indices(s)] for s in range(steps)]


def test_plain_batches_cover_each_epoch_once_and_repeat_exactly():
    n, bs, world = 103, 4, 2
    make = lambda r: StepSampler(n, bs, r, world, seed=7)  # noqa: E731
    steps = make(0).steps_per_epoch
    batches = _epoch(make, steps, world)
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) == steps * bs * world  # no item twice within an epoch
    assert batches == _epoch(make, steps, world)  # a fresh sampler (a resumed run) gives the same batches


@pytest.mark.parametrize("world", [1, 2])
def test_bucketed_batches_pad_less_and_keep_every_item_once(world: int):
    rnd = random.Random(0)
    n, bs = 400, 4
    lengths = [rnd.uniform(1.0, 8.0) for _ in range(n)]
    plain = lambda r: StepSampler(n, bs, r, world, seed=3)  # noqa: E731
    bucketed = lambda r: StepSampler(n, bs, r, world, seed=3, lengths=lengths, bucket=10)  # noqa: E731
    steps = plain(0).steps_per_epoch

    def padding(make) -> float:
        # Per rank batch: frames padded = max length x items - total length.
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b)
                   for s in range(steps) for r in range(world) for b in [make(r).indices(s)])

    got = [i for b in _epoch(bucketed, steps, world) for i in b]
    assert len(got) == len(set(got)) == steps * bs * world
    assert padding(bucketed) < 0.25 * padding(plain)
    # Ranks take interleaved items of one sorted batch: their longest items differ little.
    s0 = bucketed(0).indices(5)
    if world == 2:
        s1 = bucketed(1).indices(5)
        assert abs(max(lengths[i] for i in s0) - max(lengths[i] for i in s1)) < 1.0
    # Batch order is still shuffled, not shortest-first.
    means = [sum(lengths[i] for i in bucketed(0).indices(s)) for s in range(steps)]
    assert means != sorted(means)


def test_bucketing_without_lengths_is_refused():
    with pytest.raises(ValueError, match="one length per item"):
        StepSampler(10, 2, 0, 1, seed=0, bucket=4)
