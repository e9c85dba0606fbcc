"""Long recordings: pause-based segmentation of a synthetic 10-minute recording with known pauses, and
`hearth transcribe` output (.vtt/.srt/.eaf) that round-trips through the ELAN importer after correction."""

from __future__ import annotations

import random
import shutil
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from hearthkit.transcribe.formats import parse_vtt
from hearthkit.transcribe.vad import frame_energies, speech_segments
from tests.conftest import hearth

SR = 16000


def _utterances(archive: Path) -> list[tuple[np.ndarray, str]]:
    """The archive's espeak clips, trimmed to where the waveform is not silent, with their transcripts."""
    out = []
    for wav in sorted(archive.glob("*.wav")):
        x, sr = sf.read(wav, dtype="float32")
        assert sr == SR
        loud = np.flatnonzero(np.abs(x) > 0.01)
        out.append((x[loud[0]:loud[-1] + 1], wav.with_suffix(".txt").read_text().strip()))
    return out


@pytest.fixture(scope="module")
def long_recording(tiny_speech_archive, tmp_path_factory) -> tuple[Path, list[tuple[float, float, str]]]:
    """A 10-minute recording: espeak utterances separated by 0.8-2.5 s pauses, over faint noise; and the truth."""
    rng = random.Random(5)
    clips = _utterances(tiny_speech_archive)
    parts, truth, t = [], [], 0.0
    while t < 600.0:
        pause = rng.uniform(0.8, 2.5)
        clip, text = clips[rng.randrange(len(clips))]
        parts += [np.zeros(int(pause * SR), np.float32), clip]
        start = t + int(pause * SR) / SR
        t = start + len(clip) / SR
        truth.append((start, t, text))
    audio = np.concatenate(parts + [np.zeros(SR, np.float32)])
    audio += np.random.default_rng(0).normal(0, 0.002, len(audio)).astype(np.float32)  # room noise, -54 dBFS
    folder = tmp_path_factory.mktemp("long")
    path = folder / "korero.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    return path, truth


def test_segments_split_at_the_known_pauses(long_recording):
    path, truth = long_recording
    energy, duration = frame_energies(path)
    assert duration >= 600
    segs = speech_segments(energy)
    assert len(segs) == len(truth)
    worst = max(max(abs(s - ts), abs(e - te)) for (s, e), (ts, te, _) in zip(segs, truth, strict=True))
    assert worst <= 0.3


def test_transcribe_writes_vtt_srt_eaf_that_import_back(long_recording, tiny_asr_model, tmp_path):
    ws, _, _ = tiny_asr_model
    full, truth = long_recording
    # The first two minutes are enough for the round trip (the segmentation test above covers all ten).
    truth = [t for t in truth if t[1] < 120.0]
    audio, _ = sf.read(full, dtype="float32", frames=int((truth[-1][1] + 1.0) * SR))
    path = tmp_path / "korero.wav"
    sf.write(path, audio, SR, subtype="PCM_16")
    out = tmp_path / "drafts"
    proc = hearth("transcribe", "tiny-asr", str(path), "-f", "vtt", "-f", "srt", "-f", "eaf", "--out", str(out),
                  "--beam", "1", ws=ws, timeout=600)
    assert "real-time factor" in proc.stdout
    vtt = parse_vtt((out / "korero.vtt").read_text())
    srt = parse_vtt((out / "korero.srt").read_text())
    assert len(vtt) == len(srt) == len(truth)
    assert all(abs(a.start - b.start) < 1e-3 and abs(a.end - b.end) < 1e-3 for a, b in zip(vtt, srt, strict=True))
    assert all(abs(v.start - t[0]) <= 0.3 and abs(v.end - t[1]) <= 0.3 for v, t in zip(vtt, truth, strict=True))

    # The community corrects the draft in ELAN (here: every annotation gets its true text) ...
    tree = ET.parse(out / "korero.eaf")
    values = tree.getroot().findall(".//ALIGNABLE_ANNOTATION/ANNOTATION_VALUE")
    assert len(values) == len(truth)
    for v, (_, _, text) in zip(values, truth, strict=True):
        v.text = text
    tree.write(out / "korero.eaf", encoding="UTF-8", xml_declaration=True)
    (out / "korero.wav").symlink_to(path)  # the .eaf names the recording relative to itself
    (out / "archive.yaml").write_text(yaml.safe_dump({
        "collection": {"name": "korero-corrected", "community": "Te Hapori Tauira"},
        "collective_consent": [{"subject": "Te Hapori Tauira", "given_by": "council", "given_at": "2026-03-01",
                                "purposes": ["language_revitalization"]}]}))
    # ... and imports it back as training data under the collection's consent.
    res = hearth("data", "import-eaf", str(out / "korero.eaf"), ws=ws)
    assert f"{len(truth)} segments imported" in res.stdout
    with sqlite3.connect(ws / "catalog.sqlite") as db:
        rows = db.execute("select i.text, i.duration_s, json_extract(i.meta, '$.start_s') from items i join "
                          "collections c on c.id = i.collection_id where c.name = 'korero-corrected' "
                          "order by json_extract(i.meta, '$.start_s')").fetchall()
    assert [r[0] for r in rows] == [t[2] for t in truth]
    assert all(abs(r[2] - v.start) < 1e-3 and abs(r[1] - (v.end - v.start)) < 0.01
               for r, v in zip(rows, vtt, strict=True))


def test_serving_is_audited_and_an_exported_folder_keeps_its_guard(tiny_asr_model, tiny_speech_archive, tmp_path):
    ws, _, _ = tiny_asr_model
    clip = sorted(tiny_speech_archive.glob("*.wav"))[0]
    before = hearth("audit", "log", "--kind", "serve", ws=ws).stdout.count(" serve ")
    dest = tmp_path / "exported"
    hearth("export", "tiny-asr", str(dest), ws=ws)
    assert (dest / "restrictions.json").is_file()
    # The exported folder is served like the registered model, and each use is one `serve` event (counts only).
    for ref in ("tiny-asr", str(dest)):
        hearth("transcribe", ref, str(clip), "-f", "vtt", "--out", str(tmp_path / "out"), "--beam", "1",
               "--requester", "rangi", ws=ws)
    log = hearth("audit", "log", "--kind", "serve", ws=ws).stdout.splitlines()
    assert len(log) == before + 2
    assert all('"action": "transcribe"' in line and '"model": "tiny-asr"' in line and " rangi:" in line
               and '"seconds": ' in line for line in log[-2:])
    # Weights swapped under its restrictions.json: refused in one line, and the refusal is in the log too.
    tampered = tmp_path / "tampered"
    shutil.copytree(dest, tampered)
    raw = bytearray((tampered / "model.safetensors").read_bytes())
    raw[-1] ^= 1
    (tampered / "model.safetensors").write_bytes(bytes(raw))
    proc = hearth("transcribe", str(tampered), str(clip), "--out", str(tmp_path / "out2"), ws=ws, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "are not the ones its restrictions.json was signed for" in proc.stderr
    assert "a steward must register it" in proc.stderr and not (tmp_path / "out2").exists()
    assert "serve_refused" in hearth("audit", "log", "--kind", "serve_refused", ws=ws).stdout
    assert hearth("audit", "verify", ws=ws).returncode == 0  # the log is intact and anchored
