"""Fine-tuning registered speech bases end to end: wav2vec2-CTC under the real torchrun, Whisper in-process.

For a small wav2vec2-CTC base (~0.9M parameters, a few MB) fine-tuned with LoRA under DDP, via the CLI and the real
torchrun (2 CPU workers, gloo): run A trains 4 steps; run B has rank 1 SIGKILLed after step 3, torchrun restarts
the group and it resumes from checkpoint 2, ending bitwise equal to A. A tiny Whisper base is fully fine-tuned
under FSDP2 (one unit per transformer block, DCP checkpoints) by the same worker function in this process (a world
of one: tests/in_process.py), stopped after step 3 with that checkpoint dropped and resumed from checkpoint 2,
ending bitwise equal to its uninterrupted run; that saves the workers' `import transformers` (the 2-rank FSDP2
kill and DCP resume is proven by tests/engine/test_engine_torchrun.py). Both published models are evaluated per
speaker, exported as a folder `transformers` loads whose logits equal the model's inside hearthkit, and transcribe
a recording. The LoRA model's folder holds the adapters and new head only (< 5% of the base), and base + adapters
give its logits. (Random weights saved locally from a config; no checkpoint is reachable here.)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests import in_process
from tests.conftest import hearth
from tests.recipes.asr_hf_bases import register, tiny_wav2vec2, tiny_whisper

pytestmark = pytest.mark.slow

MODELS = {
    "wav2vec2": {"decode": {"beam": 2, "lm": {"kind": "ngram", "order": 3}},  # fusion works on a base's CTC
                 "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
    "whisper": {"language": "mi", "language_init": "es", "max_tokens": 40},
}
TORCHRUN = "wav2vec2"  # trained by `hearth train` under torchrun; the other in this process


@pytest.fixture(scope="module")
def hf_ws(tiny_speech_archive: Path, tmp_path_factory) -> Path:
    """A workspace with the tiny archive imported and both tiny bases registered by the owner."""
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.store.cas import ContentStore
    from hearthkit.workspace import init_workspace

    root = tmp_path_factory.mktemp("asr-hf")
    ws = init_workspace(root / "ws")
    catalog = open_workspace_catalog(ws)
    import_speech_folder(catalog, ContentStore(ws.store_dir), tiny_speech_archive, False)
    register(catalog, tiny_wav2vec2(root / "bases" / "w2v", hidden=128, layers=4), "tiny-w2v")  # ~3.5 MB
    # Whisper's terms are non-commercial (as MMS's are): the real run below must inherit them
    register(catalog, tiny_whisper(root / "bases" / "whisper"), "tiny-whisper", licence="cc-by-nc-4.0")
    catalog.close()
    return ws.root


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _config(folder: Path, name: str, arch: str) -> Path:
    cfg = {
        "name": name, "recipe": "asr",
        "request": {"purpose": "language_revitalization", "requester": "asr-hf-test", "collections": ["demo-korero"]},
        "split": {"by": "text", "test_fraction": 0.25},
        "model": {"base": "tiny-w2v" if arch == "wav2vec2" else "tiny-whisper", **MODELS[arch]},
        # Whisper runs sharded (FSDP2, one unit per transformer block, DCP checkpoints); wav2vec2 replicated (DDP)
        "train": {"steps": 4, "batch_size": 2, "lr": 0.01, "warmup": 1, "checkpoint_every": 2, "log_every": 1,
                  "seed": 7, "mlflow": False, "parallel": "fsdp2" if arch == "whisper" else "ddp"},
        "launch": {"nproc": 2, "timeout_s": 60},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("arch", ["wav2vec2", "whisper"])
def test_base_fine_tuned_resumed_exactly_evaluated_exported_and_transcribes(arch, hf_ws, tiny_speech_archive,
                                                                           tmp_path, monkeypatch):
    from transformers import AutoModelForCTC, WhisperForConditionalGeneration

    from hearthkit.recipes.asr.recipe import RECIPE
    from hearthkit.recipes.hf import merge_lora
    from hearthkit.recipes.load import load_model_dir
    from hearthkit.transcribe.long import load_model, transcribe_file

    a, b = f"{arch}-a", f"{arch}-b"
    if arch == TORCHRUN:
        out = hearth("train", str(_config(tmp_path, a, arch)), ws=hf_ws, timeout=600).stdout
        assert "step 4/4" in out
        killed = hearth("train", str(_config(tmp_path, b, arch)), "--max-restarts", "1", ws=hf_ws, timeout=600,
                        env={"HEARTH_TEST_KILL": "1:3"})
        assert "resumed from checkpoint step_00000002 at step 2" in killed.stdout, killed.stdout + killed.stderr
    else:
        run_a = in_process.plan(hf_ws, _config(tmp_path, a, arch))
        assert in_process.train_run(run_a, monkeypatch) == "finished"
        assert json.loads((run_a / "metrics.jsonl").read_text().splitlines()[-1])["step"] == 4
        in_process.publish(hf_ws, run_a)
        run_b = in_process.plan(hf_ws, _config(tmp_path, b, arch))
        log = in_process.interrupted_then_resumed(run_b, monkeypatch, after=3)
        assert "resumed from checkpoint step_00000002 at step 2" in log and "(fsdp2, cpu)" in log
    wa = load_file(str(hf_ws / "runs" / a / "final" / "model.safetensors"))
    wb = load_file(str(hf_ws / "runs" / b / "final" / "model.safetensors"))
    assert wa.keys() == wb.keys() and len(wa) > 15
    assert not [k for k in wa if not torch.equal(wa[k], wb[k])], "resumed weights differ"
    folder = hf_ws / "models" / a
    if arch == "wav2vec2":  # LoRA: adapters and the new CTC head only, trained, a small fraction of the base
        assert all("lora_" in k or k.startswith("hf.lm_head.") for k in wa)
        assert any("lora_B" in k and wa[k].abs().max() > 0 for k in wa)  # B starts at zero: it was trained
        base_dir = hf_ws.parent / "bases" / "w2v"
        assert _size(folder) < 0.05 * _size(base_dir), (_size(folder), _size(base_dir))
        assert json.loads((folder / "prep" / "base.json").read_text())["content_hash"] == \
            json.loads((hf_ws / "runs" / a / "run.json").read_text())["base"]["content_hash"]
    card = (folder / "model_card.md").read_text(encoding="utf-8")
    restrictions = json.loads((folder / "restrictions.json").read_text())["restrictions"]
    if arch == "whisper":  # the base's terms reach the trained model: card and signed restrictions
        assert "Fine-tuned from **tiny-whisper**" in card and "Licence: cc-by-nc-4.0" in card
        assert "bc:non_commercial" in restrictions
    else:
        assert "Fine-tuned from **tiny-w2v**" in card and "Licence: apache-2.0" in card
    evaluation = json.loads((folder / "evaluation.json").read_text())
    speakers = [r for r in evaluation["rows"] if r["by"] == "speaker"]
    assert len(speakers) >= 2 and all(r["n"] > 0 for r in speakers)  # evaluated per group

    dest = tmp_path / "exported"
    if arch == TORCHRUN:
        hearth("export", a, str(dest), ws=hf_ws, timeout=300)
    else:  # what `hearth export` runs, without a second interpreter importing transformers
        in_process.export(hf_ws, a, dest)
    _, cfg, prep, model = load_model_dir(folder, "asr")
    wav = torch.randn(16000).numpy() * 0.1
    feats = RECIPE.features(cfg, prep, wav)[None]
    with torch.no_grad():
        if arch == "wav2vec2":  # the model as loaded: the base from its registered folder + the adapters
            exported = AutoModelForCTC.from_pretrained(str(dest), local_files_only=True).eval()
            mask = torch.ones_like(feats, dtype=torch.long)
            unmerged = model.hf(input_values=feats, attention_mask=mask).logits
            plain = AutoModelForCTC.from_pretrained(str(base_dir), local_files_only=True).eval()
            assert not torch.allclose(plain.wav2vec2(feats, attention_mask=mask).last_hidden_state,
                                      model.hf.wav2vec2(feats, attention_mask=mask).last_hidden_state)
            ours = merge_lora(copy.deepcopy(model.hf))(input_values=feats, attention_mask=mask).logits
            theirs = exported(input_values=feats, attention_mask=mask).logits
            torch.testing.assert_close(unmerged, ours, rtol=1e-4, atol=1e-5)  # merging W + (alpha/r)BA rounds
        else:
            exported = WhisperForConditionalGeneration.from_pretrained(str(dest), local_files_only=True).eval()
            prompt = torch.tensor([model.prompt])
            ours = model(feats, prompt)
            theirs = exported(input_features=feats.transpose(1, 2), decoder_input_ids=prompt).logits
    assert torch.equal(ours, theirs)
    assert (dest / "README.md").is_file()

    recording = sorted(tiny_speech_archive.rglob("*.wav"))[0]
    segments = transcribe_file(load_model(folder), recording)
    assert segments and all(isinstance(s.text, str) for s in segments)
