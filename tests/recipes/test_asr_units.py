"""The asr recipe's parts: Conformer masking, units, augmentation, CTC decoding, n-gram LM, transfer rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hearthkit.errors import HearthError
from hearthkit.recipes.asr.decode import greedy, prefix_beam_search
from hearthkit.recipes.asr.model import ASRConfig, AugmentConfig, build
from hearthkit.recipes.asr.ngram import CharNgramLM
from hearthkit.recipes.asr.recipe import load_scorer, spec_augment, speed_perturb
from hearthkit.recipes.asr.tokenizer import CharTokenizer, PieceTokenizer, load_tokenizer
from hearthkit.recipes.asr.transfer import init_from_parent

TINY = dict(d_model=32, heads=2, conv_channels=8, layers=2, conv_kernel=7, dropout=0.0)


@pytest.mark.parametrize("arch", ["conformer"])  # the BiGRU's padded convolutions see padding (zeros in practice)
def test_padding_does_not_change_an_utterances_output(arch):
    torch.manual_seed(0)
    model = build(ASRConfig(arch=arch, **TINY, hidden=16), vocab_size=10).eval()
    x = torch.randn(1, 120, 80)
    alone, n = model(x, torch.tensor([120]))
    padded = torch.cat([x, torch.randn(1, 80, 80) * 5], 1)  # loud junk where the padding is
    batch, n2 = model(torch.cat([padded, torch.randn(1, 200, 80)]), torch.tensor([120, 200]))
    assert n.item() == n2[0].item() == alone.shape[1]
    assert torch.allclose(alone[0], batch[0, : n.item()], atol=1e-4)
    assert torch.allclose(batch.exp().sum(-1), torch.ones(batch.shape[:2]), atol=1e-4)  # log-probabilities


def test_small_conformer_is_in_the_planned_size_range():
    cfg = ASRConfig(arch="conformer", d_model=176, conv_channels=176, layers=12, heads=4)
    n = sum(p.numel() for p in build(cfg, 60).parameters())
    assert 8e6 < n < 15e6


def test_char_and_sentencepiece_units_round_trip(tmp_path):
    texts = ["kei te haere te tamaiti", "he pai te whare", "ka oma ngā kurī ki te awa"] * 20
    char = CharTokenizer.fit(texts)
    assert char.decode([0, *[i for c in char.encode("he pai") for i in (c, c, 0)]]) == "he pai"
    sp = PieceTokenizer.fit(texts, vocab_size=30)
    ids = sp.encode("he pai te whare")
    assert 0 not in ids and max(ids) <= len(sp)
    assert sp.decode([x for i in ids for x in (i, 0)]) == "he pai te whare"
    sp.save(tmp_path / "tokenizer.json")
    again = load_tokenizer(tmp_path / "tokenizer.json")
    assert isinstance(again, PieceTokenizer) and again.encode("he pai te whare") == ids
    assert "".join(sp.piece(i) for i in ids).strip() == "he pai te whare"


def test_speed_perturbation_changes_duration_and_spec_augment_masks():
    wav = np.sin(np.arange(16000) / 10).astype(np.float32)
    assert len(speed_perturb(wav, 1.1)) == pytest.approx(16000 / 1.1, abs=2)
    assert len(speed_perturb(wav, 0.9)) == pytest.approx(16000 / 0.9, abs=2)
    torch.manual_seed(1)
    feats = torch.ones(200, 80)
    out = spec_augment(feats, AugmentConfig(freq_masks=1, freq_width=10, time_masks=1, time_width=0.1))
    zero_cols = (out == 0).all(0).sum().item()
    zero_rows = (out == 0).all(1).sum().item()
    assert 0 < zero_cols + zero_rows and zero_cols <= 10 and zero_rows <= 20
    assert feats.eq(1).all()  # the cached features are not modified


def test_ngram_is_a_distribution_and_prefers_seen_text():
    lm = CharNgramLM.fit(["he pai", "he pai te whare", "te whare"], order=3)
    for hist in ["", "he p", "zz"]:
        total = sum(lm.prob(("\x02\x02" + hist)[-2:], c) for c in lm.alphabet)
        assert total <= 1.0 and total > 0.9  # the rest is the unseen-character reserve
    assert lm("he ", "pai") > lm("he ", "iap")
    assert lm.perplexity(["he pai"]) < lm.perplexity(["ia ph"])


def test_ngram_lowered_order_equals_one_fitted_at_that_order_and_eval_cannot_raise_it():
    texts = ["he pai", "he pai te whare", "te whare", "ka pai"]
    five = CharNgramLM.fit(texts, order=5)
    for order in (1, 2, 3):
        low, fitted = five.with_order(order), CharNgramLM.fit(texts, order=order)
        for ctx, text in [("", "he pai"), ("te ", "whare"), ("zz", "ka")]:
            assert low(ctx, text) == pytest.approx(fitted(ctx, text), abs=1e-12)
    prep = {"lm": five}
    assert load_scorer(ASRConfig(decode={"lm": {"kind": "ngram", "order": 3}}), prep).order == 3
    with pytest.raises(HearthError, match=r"decode.lm.order 7: .*fitted with order 5"):
        load_scorer(ASRConfig(decode={"lm": {"kind": "ngram", "order": 7}}), prep)
    with pytest.raises(HearthError, match="trained without a character n-gram"):
        load_scorer(ASRConfig(decode={"lm": {"kind": "ngram"}}), {})


def _logp(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows).clamp_min(1e-9).log()


def test_beam_search_matches_greedy_when_confident_and_merges_paths():
    tok = CharTokenizer(["a", "b"])
    lp = _logp([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    assert tok.decode(greedy(lp)) == "aab" == prefix_beam_search(lp, tok.piece, beam=4)
    # Greedy picks blank at every frame (p=0.4), but "a" spread over two frames is more probable in total:
    # P(a) = 0.3*0.3 + 0.3*0.4 + 0.4*0.3 = 0.33 > P("") = 0.16.
    lp = _logp([[0.4, 0.3, 0.3], [0.4, 0.3, 0.3]])
    assert tok.decode(greedy(lp)) == ""
    assert prefix_beam_search(lp, tok.piece, beam=4) in ("a", "b")


def test_shallow_fusion_lets_the_lm_decide_an_ambiguous_frame():
    tok = CharTokenizer(["a", "b"])
    lp = _logp([[0.05, 0.5, 0.45]])  # acoustics slightly prefer "a"
    lm = CharNgramLM.fit(["b", "bb", "b"], order=2)  # the language only ever says "b"
    assert prefix_beam_search(lp, tok.piece, beam=4) == "a"
    assert prefix_beam_search(lp, tok.piece, beam=4, lm=lm, lm_weight=1.0) == "b"


def _publish(folder, cfg: ASRConfig, chars: list[str]):
    """A models/NAME-like folder as `hearth train` publishes it."""
    (folder / "prep").mkdir(parents=True)
    CharTokenizer(chars).save(folder / "prep" / "tokenizer.json")
    torch.manual_seed(3)
    model = build(cfg, len(chars))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"name": folder.name, "recipe": "asr",
                                                    "model": cfg.model_dump()}))
    return model


def test_transfer_copies_encoder_and_rows_of_shared_characters(tmp_path):
    cfg = ASRConfig(**TINY)
    parent = _publish(tmp_path / "parent", cfg, ["a", "e", "k", "r"])
    child_tok = CharTokenizer(["a", "k", "ŋ", "ω"])  # a new language: two shared characters, two new
    torch.manual_seed(9)
    child = build(cfg, len(child_tok))
    fresh = child.out.weight.detach().clone()
    counts = init_from_parent(child, cfg, child_tok, tmp_path / "parent")
    assert counts["shared_units"] == 2 and counts["new_units"] == 2
    pw, cw = parent.out.weight.detach(), child.out.weight.detach()
    assert torch.equal(cw[0], pw[0])  # blank
    assert torch.equal(cw[1], pw[1]) and torch.equal(cw[2], pw[3])  # a -> a, k -> k
    assert torch.equal(cw[3], fresh[3]) and torch.equal(cw[4], fresh[4])  # new characters keep fresh rows
    assert torch.equal(child.blocks[0].att.qkv.weight, parent.blocks[0].att.qkv.weight)


def test_transfer_refuses_a_different_encoder_shape_and_a_non_model(tmp_path):
    _publish(tmp_path / "parent", ASRConfig(**TINY), ["a"])
    other = ASRConfig(**{**TINY, "d_model": 48})
    with pytest.raises(HearthError, match="d_model: parent 32 vs 48"):
        init_from_parent(build(other, 1), other, CharTokenizer(["a"]), tmp_path / "parent")
    with pytest.raises(HearthError, match="not a published hearthkit model"):
        init_from_parent(build(other, 1), other, CharTokenizer(["a"]), tmp_path)


def test_audio_seconds_are_counted_on_the_host_not_from_device_lengths():
    """The loss's throughput count comes from collate (a Python int): feat_lens may sit on a GPU, and summing it
    there would make the host wait for the device every micro-batch."""
    from hearthkit.recipes.asr.recipe import RECIPE

    batch = RECIPE.collate([{"feats": torch.randn(n, 80), "tokens": torch.tensor([1, 2])} for n in (30, 50)])
    assert batch["n_frames"] == 80 and isinstance(batch["n_frames"], int)
    model = build(ASRConfig(arch="conformer", **TINY), vocab_size=10)

    class HostOnly(torch.Tensor):  # feat_lens as if on a device: the loss may pass it on but never sum it
        def sum(self, *a, **k):
            raise AssertionError("feat_lens summed in the loss")

    batch["feat_lens"] = batch["feat_lens"].as_subclass(HostOnly)
    loss, counts = RECIPE.loss(model, batch)
    assert torch.isfinite(loss) and counts == {"samples": 2.0, "audio_seconds": 0.8}
