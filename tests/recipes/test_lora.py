"""LoRA and layer-wise LR decay on a registered-base speech model, in process (the torchrun run of a LoRA model,
killed and resumed, is tests/recipes/test_asr_hf.py): the module's state is the adapters and new head only, and a
fresh build (the base from its registered folder) plus that state reproduces the logits exactly."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.recipes.asr_hf_bases import tiny_wav2vec2


def _prep(tmp_path, base_dir):
    """A run's prep folder for base BASE_DIR, as planning writes it (base record, config copy, characters)."""
    from hearthkit.lineage.base import BaseRef, check_base_folder, hash_base_folder
    from hearthkit.recipes import hf
    from hearthkit.recipes.asr.recipe import RECIPE
    from hearthkit.recipes.asr.tokenizer import CharTokenizer

    ref = BaseRef("w2v", base_dir.resolve(), hash_base_folder(base_dir), check_base_folder(base_dir), "apache-2.0",
                  "test", (), "none: random")
    prep = tmp_path / "prep"
    hf.save_base(ref, prep)
    CharTokenizer.fit(["kia ora", "tena koe"]).save(prep / "tokenizer.json")
    return RECIPE.load_prep(prep)


def test_lora_state_is_adapters_only_and_base_plus_adapters_reproduce_the_logits(tmp_path):
    from hearthkit.errors import HearthError
    from hearthkit.recipes.asr.model import ASRConfig
    from hearthkit.recipes.asr.recipe import RECIPE

    base_dir = tiny_wav2vec2(tmp_path / "base", hidden=64, layers=2)
    prep = _prep(tmp_path, base_dir)
    cfg = ASRConfig(base="w2v", lora={"r": 4, "alpha": 8})
    torch.manual_seed(0)
    model = RECIPE.build_model(cfg, prep)
    with torch.no_grad():  # stands in for training: adapters away from their zero start
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    state = model.state_dict()
    assert state and all("lora_" in k or k.startswith("hf.lm_head.") for k in state)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(state)
    save_file(state, str(tmp_path / "adapters.safetensors"))
    assert (tmp_path / "adapters.safetensors").stat().st_size < 0.05 * (base_dir / "model.safetensors").stat().st_size

    torch.manual_seed(1)  # another init: only the base folder and the adapter file make the new model
    again = RECIPE.build_model(cfg, prep)
    again.load_state_dict(load_file(str(tmp_path / "adapters.safetensors")))
    wave = torch.randn(2, 6000)
    lengths = torch.tensor([6000, 4000])
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model(wave, lengths)[0], again(wave, lengths)[0])
    with pytest.raises(RuntimeError, match="adapter weights do not match"):  # strict over the adapters
        again.load_state_dict({k: v for k, v in state.items() if "lora_A" not in k})

    (base_dir / "model.safetensors").write_bytes(b"changed")  # the base is part of the model: a change is refused
    with pytest.raises(HearthError, match="changed since it was registered"):
        RECIPE.build_model(cfg, prep)


def test_layer_decay_gives_deeper_blocks_higher_rates_and_the_new_head_the_peak(tmp_path):
    from hearthkit.engine.config import TrainConfig
    from hearthkit.engine.optim import build_optimizer, build_scheduler
    from hearthkit.recipes import hf
    from hearthkit.recipes.asr.hf_model import build_ctc
    from hearthkit.recipes.asr.model import ASRConfig

    base_dir = tiny_wav2vec2(tmp_path / "base", layers=3)
    model = build_ctc(ASRConfig(base="b"), {"config": hf.base_config_of(base_dir), "base": {"name": "b"}}, 10)
    train = TrainConfig(lr=1e-3, layer_decay=0.5, warmup=0, schedule="constant")
    opt = build_optimizer(model, train, torch.device("cpu"))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["hf.lm_head.weight"])] == 1e-3  # the new head learns at the peak rate
    blocks = [lr_of[id(named[f"hf.wav2vec2.encoder.layers.{i}.attention.q_proj.weight"])] for i in range(3)]
    assert blocks == [1e-3 * 0.5 ** 3, 1e-3 * 0.5 ** 2, 1e-3 * 0.5]  # block i of 3: lr * decay^(4 - (i+1))
    assert lr_of[id(named["hf.wav2vec2.encoder.pos_conv_embed.conv.bias"])] == 1e-3 * 0.5 ** 4  # input side lowest
    assert id(named["hf.wav2vec2.feature_extractor.conv_layers.0.conv.weight"]) not in lr_of  # frozen: no group
    sched = build_scheduler(opt, train)
    opt.step()  # no gradients: changes nothing, keeps the optimizer-before-schedule order
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == [g["initial_lr"] for g in opt.param_groups]  # schedule scales each


def test_a_base_that_is_not_a_speech_encoder_is_refused_in_one_line():
    from hearthkit.errors import HearthError
    from hearthkit.recipes.asr.hf_model import speech_arch

    assert speech_arch("wav2vec2", "x") == "hf_ctc" and speech_arch("wavlm", "x") == "hf_ctc"
    assert speech_arch("whisper", "x") == "whisper"
    with pytest.raises(HearthError):
        speech_arch("wav2vec2-bert", "w2v-bert")  # a CTC model, but on features: not fed here
    with pytest.raises(HearthError) as exc:
        speech_arch("m2m_100", "nllb-600m")
    assert "model.base nllb-600m: a m2m_100 model is not a speech encoder" in str(exc.value)
    assert len(str(exc.value).splitlines()) == 1


def test_mms_adapters_train_only_the_adapters_and_head(tmp_path):
    from hearthkit.recipes.asr.model import ASRConfig
    from hearthkit.recipes.asr.recipe import RECIPE

    prep = _prep(tmp_path, tiny_wav2vec2(tmp_path / "base"))
    model = RECIPE.build_model(ASRConfig(base="w2v", adapter_attn_dim=8, spec_augment=False), prep)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(".adapter_layer." in n for n in trainable) and any(n.startswith("hf.lm_head.") for n in trainable)
    assert all(".adapter_layer." in n or n.startswith("hf.lm_head.") for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    logits = model(torch.randn(2, 6000), torch.tensor([6000, 4000]))[0]
    logits.square().mean().backward()
    opt.step()
    moved = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert moved and moved <= trainable  # the base's own weights stay as they were


def test_gradient_checkpointing_gives_the_same_gradients(tmp_path):
    from hearthkit.recipes.asr.model import ASRConfig
    from hearthkit.recipes.asr.recipe import RECIPE

    prep = _prep(tmp_path, tiny_wav2vec2(tmp_path / "base"))
    wave, lengths = torch.randn(2, 6000), torch.tensor([6000, 4000])
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = RECIPE.build_model(ASRConfig(base="w2v", spec_augment=False, gradient_checkpointing=checkpointing),
                                   prep)
        model.train()
        assert model.hf.is_gradient_checkpointing is checkpointing
        torch.manual_seed(1)  # the same dropout masks in both runs (checkpointing replays the RNG state)
        model(wave, lengths)[0].square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-5, atol=1e-6, msg=n)
