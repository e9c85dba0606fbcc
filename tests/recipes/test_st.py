"""The st recipe end to end through the CLI and torchrun, on the tiny espeak archive with a toy translation beside
every recording (each word reversed; the secret/sacred recordings' translations carry a marker).

The asr model both modes start from is the session's tiny Conformer (tests/conftest.py `tiny_asr_model`); the
archive is imported again as a collection `demo-st` with its translations into a copy of that workspace.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from safetensors.torch import load_file
from sqlalchemy import select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item, Model, ModelParent
from hearthkit.recipes.asr.decode import prefix_beam_search
from hearthkit.recipes.st.decode import ctc_nbest, expected_chrf_pick, posterior
from hearthkit.store.text import objects_of
from hearthkit.workspace import find_workspace
from tests.conftest import hearth

MARKER = "Ʃʘ"  # only in the translations of secret/sacred recordings: it must never reach a model

ENCODER = {"d_model": 32, "heads": 2, "conv_channels": 16, "layers": 1, "conv_kernel": 7}  # tiny-asr's shape
TEXT = {"pairs": ["mi-xx"], "vocab_size": 60, "d_model": 32, "n_heads": 2, "enc_layers": 1, "dec_layers": 1,
        "d_ff": 64, "dropout": 0.1, "beam": 2, "max_tokens": 48}


def toy_translation(text: str) -> str:
    """The toy target language: every word reversed."""
    return " ".join(w[::-1] for w in text.split())


def translated_archive(src: Path, dest: Path, collection: str = "demo-st") -> Path:
    """A copy of the tiny archive with an .xx translation beside each recording and layout.translations."""
    shutil.copytree(src, dest)
    with (dest / "metadata.csv").open(encoding="utf-8") as f:
        secret = {r["file"][:-4] for r in csv.DictReader(f) if "tk:secret_sacred" in r["labels"]}
    for txt in dest.glob("*.txt"):
        words = toy_translation(txt.read_text(encoding="utf-8").strip())
        (dest / f"{txt.stem}.xx").write_text(f"{words} {MARKER}" if txt.stem in secret else words, encoding="utf-8")
    info = yaml.safe_load((dest / "archive.yaml").read_text(encoding="utf-8"))
    info["collection"]["name"] = collection
    info["layout"] = {"translations": {"xx": ".xx"}}
    (dest / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True), encoding="utf-8")
    return dest


@pytest.fixture(scope="module")
def st_ws(tiny_asr_model, tiny_speech_archive: Path, tmp_path_factory) -> Path:
    """A copy of the tiny asr workspace (model `tiny-asr` registered) with the translated archive imported."""
    ws, _, _ = tiny_asr_model
    root = tmp_path_factory.mktemp("st")
    pristine = ws.parent / "pristine"
    shutil.copytree(pristine / "ws", root / "ws")
    if (pristine / "ws.keys").exists():
        shutil.copytree(pristine / "ws.keys", root / "ws.keys")
    archive = translated_archive(tiny_speech_archive, root / "archive")
    hearth("data", "import", str(archive), ws=root / "ws")
    return root / "ws"


def run_config(ws: Path, folder: Path, name: str, mode: str, steps: int = 6, nproc: int = 2) -> Path:
    cfg = {
        "name": name, "recipe": "st",
        "request": {"purpose": "research", "requester": "tester", "collections": ["demo-st"]},
        "split": {"by": "text", "test_fraction": 0.25},
        "model": {"mode": mode, "target": "xx", "init_from": str(ws / "models" / "tiny-asr"), "encoder": ENCODER,
                  "text": TEXT, "nbest": 3, "asr_beam": 4, "group_by": ["speaker", "dialect"]},
        "train": {"steps": steps, "batch_size": 4, "lr": 0.003, "warmup": 2, "checkpoint_every": 2, "log_every": 1,
                  "seed": 3, "mlflow": False},
        "launch": {"nproc": nproc, "threads_per_worker": 1},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


def _front(card: str) -> dict:
    return yaml.safe_load(card.split("---", 2)[1])


@pytest.mark.slow
def test_e2e_trains_governed_inherits_and_resumes_exactly(st_ws: Path, tmp_path: Path):
    """e2e: trained by torchrun (2 workers) from the asr model; a rank SIGKILLed after step 3 is restarted and
    resumes from its checkpoint to bitwise the same weights; the secret items' audio and translations are out."""
    hearth("train", str(run_config(st_ws, tmp_path, "st-e2e", "e2e")), "--no-eval", ws=st_ws, timeout=300)
    killed = hearth("train", str(run_config(st_ws, tmp_path, "st-e2e-killed", "e2e")), "--max-restarts", "1",
                    "--no-eval", ws=st_ws, env={"HEARTH_TEST_KILL": "1:3"}, timeout=300)
    root = find_workspace(st_ws)
    assert "resumed from checkpoint step_00000002 at step 2" in killed.stdout
    a = load_file(str(root.run_dir("st-e2e") / "final" / "model.safetensors"))
    b = load_file(str(root.run_dir("st-e2e-killed") / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(k.startswith("encoder.blocks.0.att") for k in a) and "bridge.weight" in a

    # Governance: the secret/sacred items are left out with the policy's reason; their words reached nothing.
    prep = root.run_dir("st-e2e") / "prep"
    gone = json.loads((prep / "left_out.json").read_text(encoding="utf-8"))
    secret = [x for x in gone if "secret" in x["reason"].lower() or "sacred" in x["reason"].lower()]
    assert secret and all(x["collection"] == "demo-st" for x in secret)
    from hearthkit.recipes.sentencepiece_vocab import SentencePieceVocab

    assert not [p for p in SentencePieceVocab.load(prep).pieces() if any(c in p for c in MARKER)]
    tokens = json.loads((prep / "tokenizer.json").read_text(encoding="utf-8"))["chars"]
    assert not set(MARKER) & set(tokens)
    manifest = json.loads((root.run_dir("st-e2e") / "manifest.json").read_text())
    secret_ids = {x["external_id"] for x in secret}
    assert not secret_ids & {e["external_id"] for e in manifest["included"]}

    # The model inherits the data's restrictions and those of the asr model it started from (its parent).
    card = (root.models_dir / "st-e2e" / "model_card.md").read_text(encoding="utf-8")
    assert _front(card)["hearthkit"]["parent"]["name"] == "tiny-asr"
    catalog = Catalog.open(root.db_url)
    with catalog.session() as s:
        model = s.scalar(select(Model).where(Model.name == "st-e2e"))
        parent = s.scalar(select(Model).where(Model.name == "tiny-asr"))
        assert model.parent_id == parent.id
        assert set(manifest["restrictions"]) <= set(model.restrictions)
        assert "tk:non_commercial" in " ".join(model.restrictions)  # a label of training items, inherited
    catalog.close()
    # The e2e decoder translates speech (beam search), and refuses transcripts.
    from hearthkit.recipes.st.cascade import translate_segments

    out = translate_segments(root.models_dir / "st-e2e", two_waves(root))
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    with pytest.raises(Exception, match="translates speech, not transcripts"):
        translate_segments(root.models_dir / "st-e2e", ["he kōrero"])


def two_waves(root) -> list[np.ndarray]:
    """Two recordings of the workspace, decoded (the sealed ones through the workspace's keys)."""
    from hearthkit.ingest.audio import decode
    from hearthkit.store.vault import Store

    catalog = Catalog.open(root.db_url)
    with catalog.session() as s:
        hashes = s.scalars(select(Item.content_hash).where(Item.external_id.like("%_0001")).limit(2)).all()
    catalog.close()
    store = Store(root.store_dir, root.keys_dir)  # demo-st is sealed (it holds secret/sacred items): keys decrypt
    return [decode(store.get(h), 16000) for h in hashes]


@pytest.mark.slow
def test_cascade_hands_nbest_transcripts_to_the_translator(st_ws: Path, tmp_path: Path):
    """cascade: the text model learns transcript -> translation; evaluation transcribes held-out audio with the
    asr model and translates; translate_segments does the same for waveforms and translates transcripts."""
    hearth("train", str(run_config(st_ws, tmp_path, "st-cascade", "cascade", steps=12, nproc=1)), ws=st_ws,
           timeout=300)
    root = find_workspace(st_ws)
    folder = root.models_dir / "st-cascade"
    evaluation = json.loads((folder / "evaluation.json").read_text())
    overall = next(r for r in evaluation["rows"] if r["by"] == "overall")
    assert overall["n"] > 0 and 0 <= overall["chrf"] <= 100 and len(overall["chrf_ci"]) == 2
    assert set(evaluation["signatures"]) == {"chrf", "bleu"}
    # The card: chrF and BLEU overall and per speaker with CIs, and sacrebleu's signatures.
    card = (folder / "model_card.md").read_text(encoding="utf-8")
    assert "| CHRF | 95% CI | BLEU | 95% CI |" in card and "nrefs:1|case:mixed|eff:no|tok:13a" in card
    assert "| speaker |" in card and _front(card)["hearthkit"]["parent"]["name"] == "tiny-asr"

    from hearthkit.recipes.load import open_model
    from hearthkit.recipes.st.cascade import translate_segments

    loaded = open_model(folder, "st")
    out = translate_segments(loaded, two_waves(root))
    assert len(out) == 2 and all(isinstance(t, str) for t in out)
    assert translate_segments(folder, ["he kōrero", ""]) == translate_segments(loaded, ["he kōrero", ""])
    with pytest.raises(Exception, match="either waveforms or transcripts"):
        translate_segments(loaded, [np.zeros(1600, dtype=np.float32), "text"])

    # `hearth oral-history --st`: a --to the model does not translate into is refused before any audio is read,
    # in one line, nothing written; without --to the model's own target (xx) is the translation's language.
    rec = tmp_path / "two.wav"
    gap = np.zeros(16000, dtype=np.float32)
    sf.write(rec, np.concatenate([gap, *[x for w in two_waves(root) for x in (w, gap)]]), 16000, subtype="PCM_16")
    use = ["--asr", "tiny-asr", "--st", "st-cascade", "--purpose", "research", "--requester", "tester", "--vad",
           "energy", "--beam", "1"]
    bad = hearth("oral-history", str(rec), *use, "--to", "fr", "--out", str(tmp_path / "bad"), ws=st_ws,
                 check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "--to fr: st model st-cascade translates into xx, not fr" in bad.stderr
    assert not (tmp_path / "bad").exists()
    hearth("oral-history", str(rec), *use, "--out", str(tmp_path / "oral"), ws=st_ws)
    assert '"translation-xx"' in (tmp_path / "oral" / "two.eaf").read_text(encoding="utf-8")


def store_objects(ws: Path) -> set[str]:
    """Digests of the objects in WS's store (clear STORE/ab/cd… and sealed STORE/sealed/ab/cd…); key files aside."""
    names = {p.parent.name + p.name for p in (ws / "store").rglob("*") if p.is_file()}
    return {n for n in names if re.fullmatch(r"[0-9a-f]{64}", n)}


def test_translation_that_is_not_utf8_is_one_line_and_stores_nothing(tiny_speech_archive: Path, tmp_path: Path,
                                                                      workspace: Path):
    archive = translated_archive(tiny_speech_archive, tmp_path / "archive")
    bad = sorted(archive.glob("*.xx"))[0]
    bad.write_bytes("tēnā koe".encode("latin-1", errors="replace") + b"\xe9\xff")
    objects_before = store_objects(workspace)
    res = hearth("data", "import", str(archive), ws=workspace, check=False)
    lines = [x for x in (res.stdout + res.stderr).splitlines() if bad.name in x]
    assert len(lines) == 1 and "is not UTF-8" in lines[0] and "re-save it as UTF-8" in lines[0]
    catalog = Catalog.open(find_workspace(workspace).db_url)
    with catalog.session() as s:
        items = s.execute(select(Item.external_id, Item.content_hash, Item.meta)).all()
    catalog.close()
    names = {x[0] for x in items}
    assert bad.name[: -len(".xx")] not in names and len(names) == len(list(archive.glob("*.wav"))) - 1
    # Every object in the store belongs to an imported item (its audio, its sealed words): none to the bad one.
    added = store_objects(workspace) - objects_before
    assert added == {o for _, digest, meta in items for o in objects_of(digest, meta)}


def test_ctc_nbest_first_is_the_asr_beams_best_and_posterior_weights_the_choice():
    gen = torch.Generator().manual_seed(0)
    pieces = " abcde"
    for _ in range(5):
        logp = torch.randn(30, len(pieces), generator=gen).log_softmax(-1)
        best = prefix_beam_search(logp, lambda i: pieces[i], beam=6)
        nbest = ctc_nbest(logp, lambda i: pieces[i], beam=6, n=4)
        assert nbest[0][0] == best and len({t for t, _ in nbest}) == len(nbest) <= 4
        assert [s for _, s in nbest] == sorted((s for _, s in nbest), reverse=True)
    # Two readings' translations agree; a third says something else: the agreed one wins even though the lone
    # reading is the single most probable, once the others' weights add up past it; alone with all weight, it wins.
    cands = ["le chat dort", "le chat dort bien", "un chien court"]
    assert expected_chrf_pick(cands, posterior([-1.0, -1.2, -0.9])) in (0, 1)
    assert expected_chrf_pick(cands, [0.0, 0.0, 1.0]) == 2
    assert expected_chrf_pick(["seul"], [1.0]) == 0


def _two_voices(archive: Path) -> Path:
    """ARCHIVE cut to the recordings of its first two voices (half the import and preparation work)."""
    with (archive / "metadata.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keep = sorted({r["speaker"] for r in rows})[:2]
    for r in rows:
        if r["speaker"] not in keep:
            for p in archive.glob(f"{Path(r['file']).stem}.*"):
                p.unlink()
    with (archive / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if r["speaker"] in keep)
    return archive


def _plain_copy(archive: Path, dest: Path, collection: str) -> Path:
    """A copy of translated ARCHIVE as COLLECTION without its tk:non_commercial labels (secret/sacred kept)."""
    shutil.copytree(archive, dest)
    with (dest / "metadata.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["labels"] = ";".join(x for x in r["labels"].split(";") if x and x != "tk:non_commercial")
    with (dest / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    info = yaml.safe_load((dest / "archive.yaml").read_text(encoding="utf-8"))
    info["collection"]["name"] = collection
    (dest / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True), encoding="utf-8")
    return dest


def _in_process(ws: Path, config: Path, monkeypatch):
    """Plan, train (engine/trainer.train as torchrun's one rank, in this process) and publish without evaluation."""
    import torch.distributed as dist

    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.engine.config import load_config
    from hearthkit.engine.trainer import train
    from hearthkit.launch.pipeline import finish_run
    from hearthkit.launch.plan import plan_run
    from hearthkit.workspace import open_workspace
    from tests.engine.conftest import in_process_env

    root = open_workspace(ws)
    catalog = open_workspace_catalog(root)
    try:
        run_dir = plan_run(root, catalog, load_config(config, []))[0]
        in_process_env(monkeypatch)
        threads = torch.get_num_threads()
        try:
            assert train(run_dir, []) == "finished"
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
            torch.set_num_threads(threads)
        finish_run(root, catalog, run_dir, evaluate=False)
    finally:
        catalog.close()
    return run_dir


def test_e2e_decoder_starts_from_an_mt_model_and_inherits_its_labels(tiny_speech_archive: Path, tmp_path: Path,
                                                                      workspace: Path, monkeypatch):
    """model.decoder_from: the e2e model takes the mt model's vocabulary, and its embedding, decoder layers and final
    norm are the mt model's before the first step; the mt model's labels (learned from items the e2e run never
    sees) reach the e2e model, whose card and signed restrictions.json name it. The mt model is an st cascade
    trained without an asr model (cascade_input: transcript), scored on gold transcripts. In process, tiny."""
    from hearthkit.recipes import get_recipe
    from hearthkit.recipes.st.transfer import DECODER_PREFIXES

    labelled = _two_voices(translated_archive(tiny_speech_archive, tmp_path / "labelled", collection="st-labelled"))
    plain = _plain_copy(labelled, tmp_path / "plain", "st-plain")
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.ingest.speech_folder import import_speech_folder
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import open_workspace

    ws_obj = open_workspace(workspace)
    catalog = open_workspace_catalog(ws_obj)
    for archive in (labelled, plain):  # what `hearth data import` does, in this process
        assert import_speech_folder(catalog, workspace_store(ws_obj), archive, False).imported
    catalog.close()
    text_side = {**TEXT, "dec_layers": 2}
    cfg = {"name": "st-text", "recipe": "st",
           "request": {"purpose": "research", "requester": "tester", "collections": ["st-labelled"]},
           "split": {"by": "text", "test_fraction": 0.25},
           "model": {"mode": "cascade", "target": "xx", "cascade_input": "transcript", "text": text_side},
           "train": {"steps": 3, "batch_size": 4, "lr": 0.003, "warmup": 1, "checkpoint_every": 3, "log_every": 1,
                     "seed": 3, "mlflow": False},
           "launch": {"nproc": 1, "threads_per_worker": 1}}
    (tmp_path / "text.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    text_run = _in_process(workspace, tmp_path / "text.yaml", monkeypatch)
    root = find_workspace(workspace)
    parent = root.models_dir / "st-text"
    # A cascade trained without an asr model is scored on the held-out items' own transcripts (the ceiling) and
    # refuses speech in one line.
    from hearthkit.evaluate.run import evaluate_run
    from hearthkit.recipes.st.cascade import translate_segments

    records = evaluate_run(text_run)["records"]
    assert records and all(r["transcript"] == r["transcript_reference"] and r["transcript"] for r in records)
    with pytest.raises(Exception, match="trained without an asr model"):
        translate_segments(parent, [np.zeros(1600, dtype=np.float32)])
    # In an oral history (`--st st-text`) such a text model translates the lines the asr model wrote, into its own
    # target unless told otherwise.
    from hearthkit.transcribe.formats import Segment
    from hearthkit.transcribe.oralhistory import st_translator

    translator, lang, name = st_translator(parent, tmp_path / "not-read.wav", None)
    lines = [Segment(0.0, 1.0, "he kōrero"), Segment(1.5, 2.0, "kei te haere")]
    assert (lang, name) == ("xx", "st-text")
    assert translator(lines) == translate_segments(parent, [s.text for s in lines])  # no audio is read

    # The e2e run: other items (no tk:non_commercial label), its decoder from st-text (one layer of its two).
    e2e = {**cfg, "name": "st-e2e-dec", "request": {**cfg["request"], "collections": ["st-plain"]},
           "model": {"mode": "e2e", "target": "xx", "decoder_from": str(parent), "encoder": ENCODER,
                     "text": {**TEXT, "vocab_size": 40}, "ctc_weight": 0.3}}
    (tmp_path / "e2e.yaml").write_text(yaml.safe_dump(e2e), encoding="utf-8")
    run_dir = _in_process(workspace, tmp_path / "e2e.yaml", monkeypatch)

    # The target vocabulary is the mt model's (vocab_size 40 here is ignored); its weights start the decoder.
    assert (run_dir / "prep" / "spm.model").read_bytes() == (parent / "prep" / "spm.model").read_bytes()
    recipe = get_recipe("st")
    mcfg = recipe.ModelConfig.model_validate(e2e["model"])
    prep = recipe.load_prep(run_dir / "prep")
    model = recipe.build_model(mcfg, prep)
    recipe.initialise(model, mcfg, prep)  # what the trainer does before step 1
    theirs = load_file(str(parent / "model.safetensors"))
    own = model.state_dict()
    copied = [k for k in own if k.startswith(DECODER_PREFIXES) and k in theirs]
    assert "embed.weight" in copied and "dec_ln.weight" in copied and any(k.startswith("decoder.0.") for k in copied)
    assert all(torch.equal(own[k], theirs[k]) for k in copied)
    assert not any(k.startswith("decoder.1.") for k in own)  # the parent's second layer has no place here

    # Labels: the mt model learned from tk:non_commercial items; the e2e run's own items carry none, yet it does.
    catalog = Catalog.open(root.db_url)
    with catalog.session() as s:
        mt_model = s.scalar(select(Model).where(Model.name == "st-text"))
        st_model = s.scalar(select(Model).where(Model.name == "st-e2e-dec"))
        inherited = set(mt_model.restrictions) - set(json.loads((run_dir / "manifest.json").read_text())
                                                      ["restrictions"])
        assert any("non_commercial" in r for r in inherited)
        assert set(mt_model.restrictions) <= set(st_model.restrictions)
        assert st_model.parent_id == mt_model.id
        edges = s.execute(select(ModelParent.parent_id, ModelParent.role).where(ModelParent.model_id == st_model.id))
        assert [tuple(e) for e in edges] == [(mt_model.id, "decoder_from")]  # withdrawal follows this edge too
    catalog.close()
    signed = json.loads((root.models_dir / "st-e2e-dec" / "restrictions.json").read_text(encoding="utf-8"))
    assert inherited <= set(signed["restrictions"])
    card = (root.models_dir / "st-e2e-dec" / "model_card.md").read_text(encoding="utf-8")
    assert "st-text" in card and inherited <= set(_front(card)["hearthkit"]["restrictions"])

    # A decoder_from that is no published model is refused at planning, in one line naming it.
    bad = {**e2e, "name": "st-e2e-bad", "model": {**e2e["model"], "decoder_from": str(tmp_path / "labelled")}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad), encoding="utf-8")
    from hearthkit.engine.config import load_config
    from hearthkit.errors import HearthError
    from hearthkit.launch.plan import plan_run

    catalog = open_workspace_catalog(ws_obj)
    with pytest.raises(HearthError) as refused:
        plan_run(ws_obj, catalog, load_config(tmp_path / "bad.yaml", []))
    catalog.close()
    assert "\n" not in str(refused.value) and str(tmp_path / "labelled") in str(refused.value)
    assert not (root.run_dir("st-e2e-bad") / "run.json").exists()


def test_a_cascade_lists_an_item_with_a_translation_but_no_transcript_as_left_out(tmp_path: Path):
    """The cascade's text model learns transcript -> translation: an item with a translation but no transcript is not
    learned from, and prep/left_out.json says so (as it says why every other item was left out)."""
    from hearthkit.data.loader import GovernedReader
    from hearthkit.recipes.st.recipe import RECIPE as ST
    from hearthkit.store.vault import Store

    said = ["kei te haere te tamaiti", "he pai te whare", "", "kia ora koutou katoa", "ka kite ano", "tēnā koe e hoa"]
    entries = [{"item_id": i + 1, "external_id": f"rec{i}", "collection": "demo-st", "content_hash": f"{i + 1:064x}",
                "text": t, "meta": {"translations": {"xx": toy_translation(t or "he kōrero anō")}}}
               for i, t in enumerate(said)]
    entries.append({"item_id": 99, "external_id": "rec-untranslated", "collection": "demo-st",
                    "content_hash": f"{99:064x}", "text": "kāore he whakamāori", "meta": {}})
    cfg = ST.ModelConfig.model_validate({"mode": "cascade", "target": "xx", "cascade_input": "transcript",
                                         "text": {**TEXT, "vocab_size": 40}})
    reader = GovernedReader(Store(tmp_path / "store", tmp_path / "keys"), entries)  # no audio is read here
    prep = ST.prepare(cfg, entries, tmp_path / "prep", reader=reader)
    gone = json.loads((tmp_path / "prep" / "left_out.json").read_text(encoding="utf-8"))
    assert gone == [{"external_id": "rec2", "collection": "demo-st", "reason": "no transcript"},
                    {"external_id": "rec-untranslated", "collection": "demo-st", "reason": "no xx translation"}]
    assert len(ST.dataset(cfg, prep, entries, reader, train=True)) == len([t for t in said if t])
