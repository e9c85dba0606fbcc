"""No plaintext of a restricted recording exists under the workspace: not after import, not after training."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path

import yaml
from sqlalchemy import func, select

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item
from hearthkit.ingest.sealing import item_words
from hearthkit.ingest.speech_folder import normalise_transcript
from hearthkit.lineage.withdraw import withdraw
from hearthkit.store.text import SEALED_TEXT
from hearthkit.store.vault import Store
from hearthkit.workspace import open_workspace
from tests.conftest import hearth


def pcm_patterns(archive: Path) -> dict[str, bytes]:
    """A 64-byte run from the middle of each recording's PCM data (skipping near-silent runs)."""
    out = {}
    for wav in sorted(archive.glob("*.wav")):
        data = wav.read_bytes()
        for off in range(len(data) // 2, len(data) - 64, 64):
            run = data[off:off + 64]
            if len(set(run)) > 24:  # varied bytes: speech, not silence
                out[wav.name] = run
                break
    return out


def transcript_patterns(archive: Path) -> dict[str, bytes]:
    """Each recording's transcript as the catalog would hold it (normalised), UTF-8."""
    return {t.name: normalise_transcript(t.read_text(encoding="utf-8")).encode("utf-8")
            for t in sorted(archive.glob("*.txt"))}


def files_containing(root: Path, patterns: dict[str, bytes]) -> list[tuple[str, str]]:
    """(file, recording) for every file under ROOT that contains a pattern."""
    hits = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and not p.is_symlink():
            content = p.read_bytes()
            hits += [(str(p.relative_to(root)), name) for name, run in patterns.items() if run in content]
    return hits


def test_restricted_audio_never_lies_on_disk_in_the_clear(speech_archive: Path, workspace: Path, tmp_path: Path):
    info = yaml.safe_load((speech_archive / "archive.yaml").read_text())
    info["collection"]["restricted"] = True  # a steward marked the whole collection restricted
    (speech_archive / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True))
    patterns = pcm_patterns(speech_archive)
    assert len(patterns) == len(list(speech_archive.glob("*.wav")))
    words = transcript_patterns(speech_archive)  # the transcripts are the community's words too
    assert min(len(w) for w in words.values()) >= 12
    # The search finds what is there: every pattern is in its own source file.
    assert {name for _, name in files_containing(speech_archive, patterns)} == set(patterns)

    out = hearth("data", "import", str(speech_archive), ws=workspace).stdout
    assert "stored encrypted" in out
    assert files_containing(workspace, patterns) == []
    assert files_containing(workspace, words) == []  # not in the catalog database either
    ws = open_workspace(workspace)
    assert ws.root not in ws.keys_dir.parents
    assert all(stat.S_IMODE(k.stat().st_mode) == 0o600 for k in ws.keys_dir.iterdir())

    # Re-encrypt under new data keys and a new community key, then train on the result.
    out = hearth("keys", "rotate", "--reencrypt", ws=workspace).stdout
    assert "re-encrypted" in out and "re-wrapped" in out
    assert files_containing(workspace, patterns) == []
    assert files_containing(workspace, words) == []

    cfg = {"name": "sealed-asr", "recipe": "asr",
           "request": {"purpose": "language_revitalization", "requester": "tester",
                       "collections": [info["collection"]["name"]]},
           "split": {"by": "text", "test_fraction": 0.25},
           "model": {"arch": "bigru", "n_mels": 40, "conv_channels": 16, "hidden": 16, "layers": 1,
                     "spec_augment": False},
           "train": {"steps": 4, "batch_size": 4, "warmup": 1, "checkpoint_every": 2, "log_every": 2},
           "launch": {"nproc": 1}}
    cfg_path = tmp_path / "sealed.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    hearth("train", str(cfg_path), ws=workspace, timeout=300)
    assert files_containing(workspace, patterns) == []
    assert files_containing(workspace, words) == []  # nor in the run's manifest, logs or model card
    # The run learned from the sealed transcripts (read through the governed reader, after rotation's new keys).
    units = json.loads((ws.run_dir("sealed-asr") / "prep" / "tokenizer.json").read_text())
    assert set("".join(w.decode() for w in words.values())) - {" "} <= set(json.dumps(units, ensure_ascii=False))

    # The run really read the sealed recordings, through the governed reader.
    store = Store(ws.store_dir, ws.keys_dir)
    reads = [json.loads(line) for f in (ws.run_dir("sealed-asr") / "access").glob("*.jsonl")
             for line in f.read_text().splitlines()]
    assert reads and all(store.is_sealed(r["content_hash"]) and not store.plain.has(r["content_hash"])
                         for r in reads)
    with Catalog.open(ws.db_url).session() as s:
        assert s.scalar(select(func.count(Item.id))) == len(patterns)


def test_sealing_a_clear_collection_moves_its_words_out_of_the_catalog(speech_archive: Path, workspace: Path):
    words = transcript_patterns(speech_archive)
    sheet = speech_archive / "metadata.csv"  # without its tk:secret_sacred labels, which would seal it at once
    rows = list(csv.DictReader(sheet.open(encoding="utf-8")))
    with sheet.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, [k for k in rows[0] if k != "labels"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    hearth("data", "import", str(speech_archive), ws=workspace)
    assert files_containing(workspace, words)  # the search finds them: clear collections keep text on the rows
    info = yaml.safe_load((speech_archive / "archive.yaml").read_text())
    name, first = info["collection"]["name"], sorted(speech_archive.glob("*.wav"))[0].stem
    info["collection"]["restricted"] = True  # the steward restricts it; the next import seals it
    (speech_archive / "archive.yaml").write_text(yaml.safe_dump(info, allow_unicode=True))
    out = hearth("data", "import", str(speech_archive), ws=workspace).stdout
    assert "stored encrypted" in out
    assert files_containing(workspace, words) == []  # no row, free page or log keeps them
    shown = hearth("data", "show", name, first, ws=workspace).stdout
    assert "text: sealed" in shown

    ws = open_workspace(workspace)
    store, catalog = Store(ws.store_dir, ws.keys_dir), Catalog.open(ws.db_url)
    with catalog.session() as s:
        item = s.scalar(select(Item).where(Item.external_id == first))
        text, meta = item_words(store, item)
        digest, speaker = item.meta[SEALED_TEXT], item.speaker
    assert text.encode() == words[f"{first}.txt"] and SEALED_TEXT not in meta and store.is_sealed(digest)
    # Withdrawing the recording erases its words with its audio.
    withdraw(catalog, store, name, "item", first, by=speaker)
    assert not store.has(digest)
    with catalog.session() as s:
        item = s.scalar(select(Item).where(Item.external_id == first))
        assert item.text is None and SEALED_TEXT in item.meta  # the row says what it had, not what it said
