"""Issue 20: pretrained base models registered with their terms, and inherited by every model fine-tuned from them.

The base folders here are real Hugging Face-format folders (config.json + safetensors) written without loading
transformers, so the governance tests stay fast; a base's architecture is only read, never built, on this side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from sqlalchemy import select

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.catalog.models import BaseModelRecord, Model, Run
from hearthkit.engine.config import RunConfig
from hearthkit.engine.export import export_model
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.manifest import Manifest, Request
from hearthkit.governance.stewardship import add_person
from hearthkit.launch.plan import parent_model
from hearthkit.lineage import base as lb
from hearthkit.lineage.publish import publish_model
from hearthkit.lineage.serving import authorize_use, resolve_use
from hearthkit.workspace import init_workspace

NC = "bc:non_commercial"


def hf_folder(path: Path, model_type: str = "wav2vec2", **extra) -> Path:
    """A minimal HF-format folder: config.json and a safetensors file, as `save_pretrained` lays them out."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"model_type": model_type, "hidden_size": 8, **extra}))
    torch.manual_seed(0)
    save_file({"encoder.w": torch.randn(4, 4)}, str(path / "model.safetensors"))
    return path


@pytest.fixture(scope="module")
def ws_cat(tmp_path_factory):
    """A workspace whose community has steward `aroha`; shared by this module's tests (each its own base names)."""
    ws = init_workspace(tmp_path_factory.mktemp("base") / "ws")
    catalog = open_workspace_catalog(ws)
    add_person(catalog, "aroha", "Ngāti Demo", "steward", owner="owner")
    add_person(catalog, "team", "Ngāti Demo", "researcher", by="aroha")
    yield ws, catalog
    catalog.close()


def _refused(exc: pytest.ExceptionInfo, *words: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and all(w in text for w in words), text


# --- check_base_folder: a folder that would need a download is refused in one line -------------------------------

def _no_config(p: Path) -> None:
    (p / "config.json").unlink()


def _corrupt_config(p: Path) -> None:
    (p / "config.json").write_text("{not json")


def _no_model_type(p: Path) -> None:
    (p / "config.json").write_text(json.dumps({"hidden_size": 8}))


def _no_weights(p: Path) -> None:
    (p / "model.safetensors").unlink()


def _absent_shard(p: Path) -> None:
    (p / "model.safetensors").unlink()
    (p / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    save_file({"a": torch.zeros(1)}, str(p / "model-00001-of-00002.safetensors"))


def _remote_code(p: Path) -> None:
    (p / "config.json").write_text(json.dumps({"model_type": "custom", "auto_map": {"AutoModel": "m.Custom"}}))


def _tokenizer_without_vocab(p: Path) -> None:
    (p / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "M2M100Tokenizer"}))


FOLDER_FAULTS = {
    "no config.json": (_no_config, "no config.json"),
    "corrupt config.json": (_corrupt_config, "not readable JSON"),
    "no model_type": (_no_model_type, "has no model_type"),
    "no weights": (_no_weights, "no weights"),
    "index naming an absent shard": (_absent_shard, "model-00002-of-00002.safetensors"),
    "remote code": (_remote_code, "remote code (auto_map)"),
    "tokenizer without vocabulary": (_tokenizer_without_vocab, "vocabulary files"),
}


@pytest.mark.parametrize("fault", sorted(FOLDER_FAULTS))
def test_a_folder_that_cannot_load_offline_is_refused_in_one_line(tmp_path, fault):
    folder = hf_folder(tmp_path / "base")
    damage, words = FOLDER_FAULTS[fault]
    damage(folder)
    with pytest.raises(HearthError) as exc:
        lb.check_base_folder(folder)
    _refused(exc, str(folder), words)


def test_a_complete_folder_gives_its_architecture(tmp_path):
    folder = hf_folder(tmp_path / "base", "m2m_100")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "M2M100Tokenizer"}))
    (folder / "sentencepiece.bpe.model").write_bytes(b"spm")
    assert lb.check_base_folder(folder) == "m2m_100"
    byt5 = hf_folder(tmp_path / "byt5", "t5")  # ByT5's tokenizer reads bytes: no vocabulary file to miss
    (byt5 / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "ByT5Tokenizer"}))
    assert lb.check_base_folder(byt5) == "t5"


def test_offline_env_is_set_idempotently(monkeypatch):
    for key in lb.OFFLINE_ENV:
        monkeypatch.delenv(key, raising=False)
    lb.set_offline_env()
    lb.set_offline_env()
    assert all(os.environ[k] == "1" for k in lb.OFFLINE_ENV)


def test_the_folder_hash_covers_names_and_bytes(tmp_path):
    a = hf_folder(tmp_path / "a")
    b = hf_folder(tmp_path / "b")
    assert lb.hash_base_folder(a) == lb.hash_base_folder(b)  # same files, same bytes, wherever they are
    (b / "model.safetensors").rename(b / "weights.safetensors")
    assert lb.hash_base_folder(a) != lb.hash_base_folder(b)


# --- registering: a steward or the owner, audited; nothing stored on a refusal -----------------------------------

def test_only_a_steward_or_the_owner_registers_a_base_and_it_is_audited(ws_cat, tmp_path):
    _, catalog = ws_cat
    folder = hf_folder(tmp_path / "mms")
    terms = {"name": "mms-reg", "licence": "CC-BY-NC-4.0", "source": "https://huggingface.co/facebook/mms-300m"}
    for by, words in (("team", "not a steward"), ("nobody", "not a steward"), (None, "--as-owner")):
        with pytest.raises(HearthError) as exc:
            lb.add_base(catalog, folder, by=by, **terms)
        _refused(exc, words)
    with pytest.raises(HearthError) as exc:
        lb.add_base(catalog, folder, by="aroha", labels=("bc:not_a_label",), **terms)
    _refused(exc, "--label", "bc:not_a_label")
    with catalog.session() as s:
        assert s.scalar(select(BaseModelRecord).where(BaseModelRecord.name == "mms-reg")) is None  # nothing stored
    ref = lb.add_base(catalog, folder, by="aroha", labels=("tk:attribution",), **terms)
    assert ref.architecture == "wav2vec2" and ref.content_hash == lb.hash_base_folder(folder)
    with pytest.raises(HearthError, match="already registered"):
        lb.add_base(catalog, folder, by="aroha", **terms)
    by_owner = lb.add_base(catalog, hf_folder(tmp_path / "xlsr"), name="xlsr-reg", licence="apache-2.0",
                           source="https://huggingface.co/facebook/wav2vec2-xls-r-300m", by=None, owner="owner",
                           training_data="436k h of public speech (VoxPopuli, MLS, CommonVoice, BABEL, VoxLingua)")
    events = [e for e in audit.events(catalog, "base_model") if e["data"]["base"].endswith("-reg")]
    assert [(e["actor"], e["data"]["base"]) for e in events] == [("aroha", "mms-reg"), ("owner:owner", "xlsr-reg")]
    assert events[0]["data"]["content_hash"] == ref.content_hash
    assert events[0]["data"]["restrictions"] == [NC, lb.UNDECLARED_KEY]
    assert lb.base_restrictions(by_owner) == []  # permissive licence, training data declared, no labels
    assert audit.verify(catalog).ok


def test_resolve_refuses_unknown_missing_and_changed_bases(ws_cat, tmp_path):
    _, catalog = ws_cat
    folder = hf_folder(tmp_path / "mms")
    lb.add_base(catalog, folder, name="mms-res", licence="CC-BY-NC-4.0", source="s", by="aroha")
    assert lb.resolve_base(catalog, "mms-res").path == folder.resolve()
    with pytest.raises(HearthError) as exc:
        lb.resolve_base(catalog, "nllb-none")
    _refused(exc, "'nllb-none'", "mms-res", "hearth base add")
    save_file({"encoder.w": torch.ones(4, 4)}, str(folder / "model.safetensors"))  # same size, other bytes
    with pytest.raises(HearthError) as exc:
        lb.resolve_base(catalog, "mms-res")
    _refused(exc, str(folder.resolve()), "changed since it was registered", "restore")
    (folder / "model.safetensors").unlink()
    (folder / "config.json").unlink()
    folder.rmdir()
    with pytest.raises(HearthError) as exc:
        lb.resolve_base(catalog, "mms-res")
    _refused(exc, str(folder.resolve()), "is missing", "restore")


@pytest.mark.parametrize(("licence", "labels", "training", "expected"), [
    ("CC-BY-NC-4.0", (), "MMS-lab", [NC]),
    ("CC BY-NC-SA 4.0", (), "x", [NC]),
    ("apache-2.0", (), "x", []),
    ("MIT", ("tk:non_commercial",), "x", ["tk:non_commercial"]),
    ("llama-community", (), "x", [NC]),  # terms hearthkit cannot read do not allow commercial use
    ("apache-2.0", ("tk:attribution", "tk:women_general"), None, [lb.UNDECLARED_KEY, "tk:women_general"]),
])
def test_base_restrictions_use_the_labels_vocabulary(licence, labels, training, expected):
    ref = lb.BaseRef("b", Path("/nowhere"), "0" * 64, "wav2vec2", licence, "s", labels, training)
    assert lb.base_restrictions(ref) == sorted(expected)


# --- inheritance: plan, publish, card, export, serving, init_from -----------------------------------------------

def _cfg(name: str, purpose: str, **model) -> RunConfig:
    return RunConfig.model_validate({"name": name, "recipe": "lm", "model": model,
                                     "request": {"purpose": purpose, "requester": "team", "collections": ["c"]}})


def _published_from_base(ws, catalog, base: str, name: str = "ft") -> Path:
    """Publish lm run NAME fine-tuned from registered BASE, recorded as the engine records it (run.json, runs.base).

    lm has no HF export hook, so these weights need not be a real model.
    """
    record = lb.base_for_run(catalog, {"base": base}, "research", "team")
    run_dir = ws.run_dir(name)
    (run_dir / "final").mkdir(parents=True)
    (run_dir / "prep").mkdir()
    torch.manual_seed(3)
    save_file({"w": torch.randn(8)}, str(run_dir / "final" / "model.safetensors"))
    cfg = {"name": name, "recipe": "lm", "model": {"base": base},
           "request": {"purpose": "research", "requester": "team", "collections": ["c"]}}
    manifest = Manifest(Request("research", "team", ("c",), "2026-12-01"))
    mhash = manifest.write(run_dir / "manifest.json")
    (run_dir / "run.json").write_text(json.dumps({"config": cfg, "manifest_hash": mhash, "base": record}))
    (run_dir / "split.json").write_text(json.dumps({"train": [], "test": []}))
    with catalog.session() as s:
        s.add(Run(name=name, recipe="lm", purpose="research", requester="team", manifest_hash=mhash, base=record))
    rows = [{"by": "overall", "group": "all", "n": 3, "bpc": 2.25, "ppl": 4.5}]
    publish_model(ws, catalog, run_dir, {"rows": rows, "gaps": {}, "metrics": ["bpc", "ppl"], "signatures": {}})
    return ws.models_dir / name


@pytest.fixture(scope="module")
def derived(ws_cat, tmp_path_factory):
    """Model `ft` fine-tuned from base `mms` (CC-BY-NC-4.0, training data undeclared); tests leave them as found."""
    ws, catalog = ws_cat
    folder = hf_folder(tmp_path_factory.mktemp("derived") / "mms")
    lb.add_base(catalog, folder, name="mms", licence="CC-BY-NC-4.0", by="aroha",
                source="https://huggingface.co/facebook/mms-300m")
    return ws, catalog, folder, _published_from_base(ws, catalog, "mms")


def test_a_commercial_run_may_not_fine_tune_a_non_commercial_base(ws_cat, tmp_path):
    _, catalog = ws_cat
    lb.add_base(catalog, hf_folder(tmp_path / "mms"), name="mms-run", licence="CC-BY-NC-4.0", source="s",
                by="aroha")
    with pytest.raises(HearthError) as exc:
        parent_model(catalog, _cfg("c1", "commercial", base="mms-run"))  # what `hearth plan` and `hearth train` ask
    _refused(exc, "model.base mms-run", "non-commercial", "commercial run")
    assert parent_model(catalog, _cfg("r1", "research", base="mms-run")) is None  # research is fine
    with pytest.raises(HearthError, match="no base model of that name"):
        parent_model(catalog, _cfg("r2", "research", base="nllb-none"))


def test_the_derived_model_inherits_the_base_and_its_card_cites_it(derived):
    _, catalog, folder, out = derived
    with catalog.session() as s:
        m = s.scalar(select(Model).where(Model.name == "ft"))
        run = s.scalar(select(Run).where(Run.name == "ft"))
        assert m.restrictions == [NC, lb.UNDECLARED_KEY]
        assert run.base["name"] == "mms" and run.base["content_hash"] == lb.hash_base_folder(folder)
        assert any("base model mms" in a for a in m.attribution)
    card = (out / "model_card.md").read_text()
    for fact in ("## Base model (pretrained)", "**mms**", lb.hash_base_folder(folder), "CC-BY-NC-4.0",
                 "https://huggingface.co/facebook/mms-300m", "Training data of the base: undeclared", NC,
                 "every model derived from mms is non-commercial"):
        assert fact in card, fact
    restrictions = json.loads((out / "restrictions.json").read_text())["restrictions"]
    assert NC in restrictions  # the signed, machine-readable form travels with the folder too


def test_a_model_from_a_non_commercial_base_is_refused_for_commercial_export_serving_and_init_from(derived, tmp_path):
    _, catalog, _, _ = derived
    with pytest.raises(HearthError) as exc:
        export_model(catalog, "ft", tmp_path / "sold", "commercial", "team")
    _refused(exc, "model ft", NC, "no commercial use")
    assert not (tmp_path / "sold").exists()
    with pytest.raises(HearthError, match=f"inherits {NC}"):
        authorize_use(catalog, "ft", "generate", "team", "commercial")
    with pytest.raises(HearthError, match=f"inherits {NC}"):
        resolve_use(catalog, "ft", "generate", "team", "commercial")  # what `hearth transcribe/generate` ask
    with pytest.raises(HearthError, match=f"inherits {NC}"):
        parent_model(catalog, RunConfig.model_validate({
            "name": "child", "recipe": "lm", "init_from": "ft",
            "request": {"purpose": "commercial", "requester": "team", "collections": ["c"]}}))
    refusals = [e for e in audit.events(catalog, "serve_refused") if e["data"]["purpose"] == "commercial"]
    assert len(refusals) == 2 and all(NC in e["data"]["reason"] for e in refusals)
    dest, restrictions = export_model(catalog, "ft", tmp_path / "research", "research", "team")
    assert NC in restrictions and "mms" in (dest / "LICENSE.md").read_text()
    with pytest.raises(HearthError, match="no commercial use"):  # the exported folder still refuses it
        resolve_use(catalog, str(dest), "generate", "buyer", "commercial")


def test_a_base_changed_or_missing_on_disk_refuses_every_use_of_its_models(derived, tmp_path):
    _, catalog, folder, out = derived
    assert authorize_use(catalog, "ft", "generate", "team", "research").name == "ft"
    (folder / "extra.txt").write_text("swapped in")
    for use in (lambda: authorize_use(catalog, "ft", "generate", "team", "research"),
                lambda: resolve_use(catalog, str(out), "generate", "team", "research"),
                lambda: export_model(catalog, "ft", tmp_path / "x", "research", "team"),
                lambda: parent_model(catalog, RunConfig.model_validate({
                    "name": "child", "recipe": "lm", "init_from": "ft",
                    "request": {"purpose": "research", "requester": "team", "collections": ["c"]}}))):
        with pytest.raises(HearthError) as exc:
            use()
        _refused(exc, "model ft may not be used", str(folder.resolve()), "changed since it was registered")
    assert not (tmp_path / "x").exists()
    (folder / "extra.txt").unlink()
    assert authorize_use(catalog, "ft", "generate", "team", "research").name == "ft"  # restored: usable again


def test_prov_and_croissant_include_the_base(derived, tmp_path):
    from prov.model import ProvDocument

    from hearthkit.lineage.croissant import base_card
    from hearthkit.lineage.prov import prov_json

    _, catalog, folder, _ = derived
    with catalog.session() as s:
        doc = ProvDocument.deserialize(content=prov_json(s, "ft"), format="json")
    digest = lb.hash_base_folder(folder)
    entities = {str(r.identifier): {str(k): str(v) for k, v in r.attributes} for r in doc.get_records()
                if type(r).__name__ == "ProvEntity"}
    base = entities["hearth:base/mms"]
    assert base["hearth:content_sha256"] == digest and base["hearth:licence"] == "CC-BY-NC-4.0"
    derivations = [(str(r.args[0]), str(r.args[1])) for r in doc.get_records() if type(r).__name__ == "ProvDerivation"]
    assert ("hearth:model/ft", "hearth:base/mms") in derivations
    path = base_card(lb.get_base(catalog, "mms"), tmp_path / "card")
    card = json.loads(path.read_text())
    assert card["license"] == "CC-BY-NC-4.0" and digest in card["description"]
    assert "undeclared" in card["rai:dataCollection"]
    mlc = pytest.importorskip("mlcroissant", reason="mlcroissant is a dev dependency (make test installs it)")
    records = list(mlc.Dataset(jsonld=str(path)).records("base"))  # raises on any schema problem
    assert records[0]["base/content_sha256"].decode() == digest


def test_hearth_base_commands(ws_cat, tmp_path):
    from typer.testing import CliRunner

    from hearthkit.cli.main import app

    ws, _ = ws_cat
    env = {"HEARTH_WORKSPACE": str(ws.root), "COLUMNS": "300"}
    runner = CliRunner()  # in process, as EveryVoice tests its typer CLI: the commands are the same functions
    folder = hf_folder(tmp_path / "nllb-cli", "m2m_100")
    bad = runner.invoke(app, ["base", "add", str(folder), "--name", "nllb-cli", "--licence", "CC-BY-NC-4.0",
                              "--source", "s", "--by", "team"], env=env)
    assert bad.exit_code == 2 and "not a steward" in bad.output and "Traceback" not in bad.output
    ok = runner.invoke(app, ["base", "add", str(folder), "--name", "nllb-cli", "--licence", "CC-BY-NC-4.0", "--source",
                             "https://huggingface.co/facebook/nllb-200-distilled-600M", "--label", "tk:attribution",
                             "--by", "aroha"], env=env)
    assert ok.exit_code == 0 and "registered base nllb-cli (m2m_100" in ok.output and NC in ok.output
    listed = json.loads(runner.invoke(app, ["base", "list", "--json"], env=env).output)["bases"]
    assert [b["restrictions"] for b in listed if b["name"] == "nllb-cli"] == [[NC, lb.UNDECLARED_KEY]]
    shown = runner.invoke(app, ["base", "show", "nllb-cli"], env=env).output
    assert "intact" in shown and "training data: undeclared" in shown
    (folder / "model.safetensors").unlink()
    shown = json.loads(runner.invoke(app, ["base", "show", "nllb-cli", "--json"], env=env).output)
    assert shown["folder_state"].startswith("NOT USABLE") and "changed since it was registered" in shown["folder_state"]


def test_export_of_a_base_derived_model_is_a_transformers_folder_with_its_terms(derived, tmp_path, monkeypatch):
    """The export plumbing around a recipe's `export_hf` hook (here a stand-in writing a tiny GPT-2; the real asr and
    mt hooks are exercised end to end, with logits compared, in tests/recipes/test_asr_hf.py and test_mt_hf*.py)."""
    import yaml
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    from hearthkit.lineage import folder as mf
    from hearthkit.recipes import get_recipe

    ws, catalog, _, _ = derived
    torch.manual_seed(0)
    tiny = GPT2LMHeadModel(GPT2Config(n_embd=8, n_layer=1, n_head=2, vocab_size=16, n_positions=8, bos_token_id=0,
                                      eos_token_id=0)).eval()

    def export_hf(folder: Path, out: Path) -> None:
        assert (folder / "model.safetensors").is_file()  # the hook is handed the published folder
        tiny.save_pretrained(str(out))

    monkeypatch.setattr(get_recipe("lm"), "export_hf", export_hf, raising=False)
    dest, restrictions = export_model(catalog, "ft", tmp_path / "hf", "research", "team")
    loaded = AutoModelForCausalLM.from_pretrained(str(dest), local_files_only=True).eval()
    ids = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, tiny(ids).logits)
    front = yaml.safe_load((dest / "README.md").read_text().split("---", 2)[1])
    assert front["library_name"] == "transformers" and front["base_model"] == "facebook/mms-300m"
    assert json.loads((dest / "hearthkit" / "config.json").read_text())["model"]["base"] == "mms"
    assert NC in restrictions and NC in (dest / "LICENSE.md").read_text()
    doc, why = mf.read_signed(dest, ws)  # signed over the transformers weights now in the folder
    assert why == "" and NC in doc["restrictions"]
    assert audit.events(catalog, "export")[-1]["data"]["format"] == "transformers"
