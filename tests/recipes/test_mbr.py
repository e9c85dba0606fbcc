"""Minimum-Bayes-risk choice with chrF: sacrebleu's sentence chrF, the consensus candidate, ties."""

from __future__ import annotations

import random

from sacrebleu.metrics.chrf import CHRF

from hearthkit.recipes.mt.mbr import chrf, mbr_pick, ngrams


def test_utility_is_sacrebleus_sentence_chrf():
    rng = random.Random(0)
    words = "ko'ã mba'e ojejapo va'erã ñane retãme ha ñande ava ñe'ẽme oñemboguata hag̃ua , .".split()
    texts = [" ".join(rng.choices(words, k=rng.randint(0, 10))) for _ in range(25)]
    ref = CHRF()
    for a in texts:
        for b in texts:
            assert abs(chrf(ngrams(a), ngrams(b)) - ref.sentence_score(a, [b]).score) < 1e-9
    sym = CHRF(beta=1)
    assert all(abs(chrf(ngrams(a), ngrams(b), 1.0) - sym.sentence_score(a, [b]).score) < 1e-9
               for a in texts for b in texts)


def test_the_consensus_candidate_wins_over_the_first_and_the_outlier():
    cands = ["un perro corre lejos de aquí", "el gato se sentó en la silla", "el perro se sentó en la silla",
             "el gato se sentó en la silla", "el gato duerme en la silla"]
    # The model's first choice shares almost nothing with the others; the sentence drawn twice is the medoid.
    assert mbr_pick(cands) == 1
    # chrF weighs recall twice: a candidate holding another whole (plus a little) gains from it.
    nested = ["el gato", "el gato se sentó", "el gato se sentó en la silla"]
    assert mbr_pick(nested) == 2
    assert mbr_pick(nested, beta=1.0) == 1  # weighing precision alike, the middle one is closest to both others
    assert mbr_pick(["b", "a", "a", "b"]) == 0  # equal utility: the earlier (more probable) one
    assert mbr_pick(["x", "y"]) == 0  # two candidates: nothing to vote, keep the model's first
    assert mbr_pick(["", "", "algo"]) == 0  # empty outputs are candidates like any other
