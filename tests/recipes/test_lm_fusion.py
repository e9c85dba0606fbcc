"""The lm recipe's character model fused into asr beam search (`decode.lm: {kind: plugin, plugin: lm}`)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from hearthkit.errors import HearthError
from hearthkit.recipes.asr import decode as ctc
from hearthkit.recipes.asr.model import ASRConfig
from hearthkit.recipes.asr.recipe import load_scorer
from hearthkit.recipes.asr.tokenizer import CharTokenizer
from hearthkit.recipes.lm.model import GPT, LMConfig
from hearthkit.recipes.lm.recipe import CharUnits, LMScorer

TEXT = "ba ba ba ba ba ba ba ba\n" * 40  # after "b" always "a": the LM should be sure of it


def _train_char_lm(folder: Path) -> Path:
    """A tiny char GPT trained in-process on TEXT, written as a published model folder."""
    torch.manual_seed(0)
    units = CharUnits.fit([TEXT])
    cfg = LMConfig(units="char", block_size=16, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    model = GPT(cfg, len(units))
    ids = torch.tensor([units.SEP if c == "\n" else units.encode(c)[0] for c in TEXT])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(150):
        starts = torch.randint(0, len(ids) - 17, (16,))
        x = torch.stack([ids[s:s + 17] for s in starts])
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder.mkdir(parents=True)
    (folder / "prep").mkdir()
    units.save(folder / "prep")
    (folder / "config.json").write_text(json.dumps({"recipe": "lm", "model": cfg.model_dump()}))
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    return folder


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    return _train_char_lm(tmp_path_factory.mktemp("lm") / "toy-lm")


def _asr_cfg(path: Path, weight: float) -> ASRConfig:
    return ASRConfig.model_validate({"decode": {"beam": 4, "lm": {"kind": "plugin", "plugin": "lm",
                                                                  "path": str(path), "weight": weight,
                                                                  "bonus": 0.0}}})


def test_fusion_scores_equal_the_lm_scoring_api(lm_dir: Path):
    """Character by character from the start, plus the end: the same log-probability as LMScorer.score."""
    from hearthkit.recipes.load import load_model_dir

    scorer = load_scorer(_asr_cfg(lm_dir, 1.0), {})
    _, _, prep, model = load_model_dir(lm_dir, "lm")
    for text in ["ba ba", "ab", "b"]:
        by_char = sum(scorer(text[:k], text[k]) for k in range(len(text))) + scorer.final(text)
        assert by_char == pytest.approx(LMScorer(model, prep).score([text])[0], abs=1e-4)
    assert scorer("", "ba") == pytest.approx(scorer("", "b") + scorer("b", "a"), abs=1e-5)
    assert math.exp(scorer("b", "a")) > 0.9  # it learned the pattern


def test_fusion_turns_an_acoustically_ambiguous_frame_into_what_the_lm_expects(lm_dir: Path):
    tok = CharTokenizer(["a", "b"])  # ids: 0 blank, 1 a, 2 b
    # Frames: clearly b, blank, then a frame that leans to "b" (0.55) over "a" (0.45).
    probs = torch.tensor([[0.02, 0.02, 0.96], [0.96, 0.02, 0.02], [0.0, 0.45, 0.55]]).clamp_min(1e-4)
    logp = probs.log()
    plain = ctc.prefix_beam_search(logp, tok.piece, beam=4)
    scorer = load_scorer(_asr_cfg(lm_dir, 1.0), {})
    fused = ctc.prefix_beam_search(logp, tok.piece, beam=4, lm=scorer, lm_weight=1.0)
    assert plain == "bb" and fused == "ba"


def test_fusion_is_refused_without_a_path_or_for_an_unknown_plugin(lm_dir: Path):
    with pytest.raises(HearthError, match="decode.lm.path is missing"):
        load_scorer(_asr_cfg(lm_dir, 1.0).model_copy(update={"decode": ASRConfig.model_validate(
            {"decode": {"beam": 4, "lm": {"kind": "plugin", "plugin": "lm"}}}).decode}), {})
    cfg = ASRConfig.model_validate({"decode": {"beam": 4, "lm": {"kind": "plugin", "plugin": "nope", "path": "x"}}})
    with pytest.raises(HearthError, match="'nope' is not registered; known: lm"):
        load_scorer(cfg, {})
