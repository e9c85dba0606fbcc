"""`hearth oral-history`: silero-vad segments -> transcript -> translation -> ELAN (checked by pympi-ling), WebVTT
with both lines and an HTML reader; the corrected ELAN file goes back in as transcription and translation training
data; a recording with no speech and an ELAN file whose tiers do not align are one line each, and nothing is lost."""

from __future__ import annotations

import json
import os
import random
import sqlite3
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import soundfile as sf
import yaml

from hearthkit.transcribe.formats import Segment, parse_vtt, to_html, to_vtt
from tests.conftest import hearth

SR = 16000
ARCHIVE = {"collection": {"name": "korero-oral", "community": "Te Hapori Tauira"},
           "collective_consent": [{"subject": "Te Hapori Tauira", "given_by": "council", "given_at": "2026-03-01",
                                   "purposes": ["language_revitalization"]}]}


@pytest.fixture(scope="module")
def recording(tiny_speech_archive, tmp_path_factory) -> tuple[Path, list[tuple[float, float, str]]]:
    """About 40 s: eight of the archive's espeak utterances with 1-2 s pauses over faint noise; and the truth."""
    wavs = sorted(tiny_speech_archive.glob("*.wav"))[:8]
    clips = [(w, w.with_suffix(".txt").read_text().strip()) for w in wavs]
    return _stitch(clips, seed=3, noise_seed=0, path=tmp_path_factory.mktemp("oral") / "korero.wav")


def _stitch(clips: list[tuple[Path, str]], seed: int, noise_seed: int, path: Path
            ) -> tuple[Path, list[tuple[float, float, str]]]:
    """CLIPS (wav, truth label) trimmed of silence, joined by 1-2 s pauses over faint noise, written to PATH."""
    rng = random.Random(seed)
    parts, truth, t = [], [], 0.0
    for w, label in clips:
        x, _ = sf.read(w, dtype="float32")
        loud = np.flatnonzero(np.abs(x) > 0.01)
        x = x[loud[0]:loud[-1] + 1]
        pause = rng.uniform(1.0, 2.0)
        parts += [np.zeros(int(pause * SR), np.float32), x]
        start = t + int(pause * SR) / SR
        t = start + len(x) / SR
        truth.append((start, t, label))
    audio = np.concatenate(parts + [np.zeros(SR, np.float32)])
    audio += np.random.default_rng(noise_seed).normal(0, 0.002, len(audio)).astype(np.float32)
    sf.write(path, audio, SR, subtype="PCM_16")
    return path, truth


def _glossary(segments: list[Segment]) -> list[str]:
    """Stand-in for the translation model (mt and st models are trained and tested in tests/recipes; here the
    files and the round trip are under test): each line in capitals, with characters HTML must escape."""
    return [f"EN: {s.text.upper()} <&>" for s in segments]


def test_oral_history_writes_elan_vtt_and_html_and_the_corrections_come_back_as_training_data(
        tiny_asr_model, recording, tmp_path):
    import pympi

    from hearthkit.transcribe.long import load_model
    from hearthkit.transcribe.oralhistory import make_oral_history

    ws, _, _ = tiny_asr_model
    path, truth = recording
    lm = load_model(ws / "models" / "tiny-asr", beam=1)
    out = tmp_path / "oral"
    res = make_oral_history(lm, path, out, _glossary, "en", vad="silero")
    # silero-vad finds the eight utterances where they are (its padding is 0.1 s either side).
    assert len(res.segments) == len(truth)
    assert all(abs(s.start - a) <= 0.35 and abs(s.end - z) <= 0.35
               for s, (a, z, _) in zip(res.segments, truth, strict=True))

    eaf = pympi.Elan.Eaf(str(out / "korero.eaf"))
    assert set(eaf.get_tier_names()) == {"transcription", "translation-en"}
    words = sorted(eaf.get_annotation_data_for_tier("transcription"))
    assert [(a, b) for a, b, _ in words] == [(round(s.start * 1000), round(s.end * 1000)) for s in res.segments]
    trans = sorted(eaf.get_ref_annotation_data_for_tier("translation-en"))
    assert [(a, b) for a, b, *_ in trans] == [(a, b) for a, b, _ in words]  # aligned through their parents
    assert [x[2] for x in trans] == [f"EN: {v.upper()} <&>" if v else "" for _, _, v in words]
    assert eaf.tiers["translation-en"][2]["PARENT_REF"] == "transcription"

    vtt = (out / "korero.vtt").read_text(encoding="utf-8")
    assert "&lt;&amp;&gt;" in vtt  # cue text is escaped as WebVTT requires
    cues = parse_vtt(vtt)
    assert [(c.text, c.translation) for c in cues] == [(s.text or "…", s.translation or "…") for s in res.segments]

    page = (out / "korero.html").read_text(encoding="utf-8")
    assert page.count('data-start="') == len(truth) and "&lt;&amp;&gt;" in page and "<&>" not in page
    assert f'src="{quote(os.path.relpath(path, out))}"' in page and "No speaker tier" in page  # linked, not copied

    # The community corrects both tiers in ELAN (here with pympi) and imports the file back.
    for i, (a, b, _) in enumerate(words):
        eaf.remove_annotation("transcription", (a + b) // 2)
        eaf.add_annotation("transcription", a, b, truth[i][2])
    eaf.remove_tier("translation-en")
    eaf.add_tier("translation-en", ling="translation", parent="transcription")
    for i, (a, b, _) in enumerate(words):
        eaf.add_ref_annotation("translation-en", "transcription", (a + b) // 2, f"english {i}")
    eaf.to_file(str(out / "korero.eaf"))
    (out / "korero.wav").symlink_to(path)
    (out / "archive.yaml").write_text(yaml.safe_dump(ARCHIVE))
    res2 = hearth("data", "import-eaf", str(out / "korero.eaf"), ws=ws)
    assert f"{len(truth)} segments imported" in res2.stdout
    with sqlite3.connect(ws / "catalog.sqlite") as db:
        rows = db.execute("select i.text, i.meta from items i join collections c on c.id = i.collection_id "
                          "where c.name = 'korero-oral' order by json_extract(i.meta, '$.start_s')").fetchall()
    assert [r[0] for r in rows] == [t[2] for t in truth]  # transcription: training data for the asr model
    assert [json.loads(r[1])["translations"] for r in rows] == [{"en": f"english {i}"} for i in range(len(truth))]

    # A second correction of the translations alone updates the same items (nothing added, nothing lost).
    for i, (a, b, _) in enumerate(words):
        eaf.remove_ref_annotation("translation-en", (a + b) // 2)
        eaf.add_ref_annotation("translation-en", "transcription", (a + b) // 2, f"better {i}")
    eaf.to_file(str(out / "korero.eaf"))
    res3 = hearth("data", "import-eaf", str(out / "korero.eaf"), ws=ws)
    assert f"0 segments imported, {len(truth)} corrected" in res3.stdout
    with sqlite3.connect(ws / "catalog.sqlite") as db:
        rows = db.execute("select i.meta from items i join collections c on c.id = i.collection_id "
                          "where c.name = 'korero-oral' order by json_extract(i.meta, '$.start_s')").fetchall()
    assert [json.loads(r[0])["translations"]["en"] for r in rows] == [f"better {i}" for i in range(len(truth))]


def test_the_command_refuses_silence_and_never_overwrites_corrections(tiny_asr_model, recording, tmp_path):
    ws, _, _ = tiny_asr_model
    # Room noise only for silero; digital silence for the energy detector, which reads noise alone as speech (its
    # threshold is relative to the recording's own range: the reason silero-vad is the default).
    hiss = np.random.default_rng(1).normal(0, 0.001, 20 * SR).astype(np.float32)
    for vad, audio in (("silero", hiss), ("energy", np.zeros(20 * SR, np.float32))):
        silent = tmp_path / f"silence-{vad}.wav"
        sf.write(silent, audio, SR)
        proc = hearth("oral-history", str(silent), "--asr", "tiny-asr", "--out", str(tmp_path / vad), "--vad", vad,
                      ws=ws, check=False)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "no speech found" in proc.stderr and "nothing was written" in proc.stderr
        assert not any((tmp_path / vad).glob("*"))

    path, truth = recording
    out = tmp_path / "drafts"
    done = hearth("oral-history", str(path), "--asr", "tiny-asr", "--out", str(out), "--beam", "1", ws=ws)
    assert "real-time factor" in done.stdout and "No speaker tier" in done.stdout
    assert len(parse_vtt((out / "korero.vtt").read_text())) == len(truth)
    (out / "korero.eaf").write_text("corrected by the community", encoding="utf-8")
    again = hearth("oral-history", str(path), "--asr", "tiny-asr", "--out", str(out), ws=ws, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (out / "korero.eaf").read_text(encoding="utf-8") == "corrected by the community"


BAD_EAF = """<?xml version="1.0" encoding="UTF-8"?>
<ANNOTATION_DOCUMENT AUTHOR="x" FORMAT="3.0" VERSION="3.0">
 <HEADER MEDIA_FILE="" TIME_UNITS="milliseconds">
  <MEDIA_DESCRIPTOR MEDIA_URL="file:///x/korero.wav" MIME_TYPE="audio/x-wav" RELATIVE_MEDIA_URL="./korero.wav"/>
 </HEADER>
 <TIME_ORDER>
  <TIME_SLOT TIME_SLOT_ID="ts1" TIME_VALUE="1000"/><TIME_SLOT TIME_SLOT_ID="ts2" TIME_VALUE="2500"/>
  <TIME_SLOT TIME_SLOT_ID="ts3" TIME_VALUE="1400"/><TIME_SLOT TIME_SLOT_ID="ts4" TIME_VALUE="2500"/>
 </TIME_ORDER>
 <TIER TIER_ID="transcription" LINGUISTIC_TYPE_REF="transcription">
  <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2">
   <ANNOTATION_VALUE>kei te pai</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
 </TIER>
 {translation}
 <LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="transcription" TIME_ALIGNABLE="true"/>
 <LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="translation" TIME_ALIGNABLE="{alignable}"/>
</ANNOTATION_DOCUMENT>
"""
REF_TO_NOTHING = """<TIER TIER_ID="translation-en" LINGUISTIC_TYPE_REF="translation" PARENT_REF="transcription">
  <ANNOTATION><REF_ANNOTATION ANNOTATION_ID="a2" ANNOTATION_REF="a9">
   <ANNOTATION_VALUE>it is good</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION></TIER>"""
SPAN_MISMATCH = """<TIER TIER_ID="translation-en" LINGUISTIC_TYPE_REF="translation">
  <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a2" TIME_SLOT_REF1="ts3" TIME_SLOT_REF2="ts4">
   <ANNOTATION_VALUE>it is good</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION></TIER>"""


@pytest.mark.parametrize(("tier", "alignable", "says"), [(REF_TO_NOTHING, "false", "refers to 'a9'"),
                                                          (SPAN_MISMATCH, "true", "(1.400-2.500 s) matches")])
def test_an_elan_file_whose_tiers_do_not_align_is_one_line_and_imports_nothing(workspace, tmp_path, tier, alignable,
                                                                                says):
    sf.write(tmp_path / "korero.wav", np.zeros(3 * SR, np.float32), SR)
    (tmp_path / "archive.yaml").write_text(yaml.safe_dump(ARCHIVE))
    eaf = tmp_path / "korero.eaf"
    eaf.write_text(BAD_EAF.replace("{translation}", tier).replace("{alignable}", alignable), encoding="utf-8")
    proc = hearth("data", "import-eaf", str(eaf), ws=workspace, check=False)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "the tiers do not align" in proc.stderr and says in proc.stderr and "nothing was imported" in proc.stderr
    with sqlite3.connect(workspace / "catalog.sqlite") as db:
        assert db.execute("select count(*) from items").fetchone() == (0,)
    assert eaf.read_text(encoding="utf-8").count("it is good") == 1  # the file itself is untouched


def test_vtt_and_html_escape_the_words_and_keep_both_lines():
    segs = [Segment(0.5, 1.25, "<script>alert(1)</script> & co", translation="a < b"),
            Segment(2.0, 3.0, "plain", translation="")]
    vtt = to_vtt(segs)
    assert "<script>" not in vtt and "&lt;script&gt;" in vtt
    assert [(c.start, c.end, c.text, c.translation) for c in parse_vtt(vtt)] == [
        (0.5, 1.25, "<script>alert(1)</script> & co", "a < b"), (2.0, 3.0, "plain", "…")]
    page = to_html(segs, "my rec#1.wav", "Kōrero <1>")
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in page
    assert "Kōrero &lt;1&gt;" in page and 'src="my%20rec%231.wav"' in page
    assert page.count("<li ") == 2 and 'data-start="0.500" data-end="1.250"' in page


@pytest.fixture(scope="module")
def two_voices(tiny_speech_archive, tmp_path_factory) -> tuple[Path, list[tuple[float, float, str]]]:
    """Six espeak-ng utterances, a male (hemi) and a female (mere) voice taking turns, with 1-2 s pauses over faint
    noise; and the truth (start, end, speaker)."""
    clips = [(tiny_speech_archive / f"{who}_{i:04d}.wav", who) for i in range(3) for who in ("hemi", "mere")]
    return _stitch(clips, seed=5, noise_seed=1, path=tmp_path_factory.mktemp("voices") / "turns.wav")


def _same_partition(labels: list[str | None], truth: list[str]) -> bool:
    """LABELS group the segments exactly as TRUTH does (whatever the names)."""
    return len(set(labels)) == len(set(truth)) == len(set(zip(labels, truth, strict=True)))


def test_diarisation_tells_two_voices_apart_with_and_without_their_number(two_voices):
    from hearthkit.errors import HearthError
    from hearthkit.transcribe.diarise import diarise

    path, truth = two_voices
    spans = [(a, z) for a, z, _ in truth]
    who = [w for *_, w in truth]
    given = diarise(path, spans, speakers=2)
    assert _same_partition(given, who) and given[0] == "speaker-1"  # numbered by first appearance
    assert _same_partition(diarise(path, spans), who)  # the distance cut finds the two as well
    assert diarise(path, spans[:1]) == ["speaker-1"]
    with pytest.raises(HearthError, match="only 6 speech segments"):
        diarise(path, spans, speakers=7)


def test_oral_history_with_diarise_writes_one_elan_tier_per_speaker(tiny_asr_model, two_voices, tmp_path):
    import pympi

    from hearthkit.transcribe.long import load_model
    from hearthkit.transcribe.oralhistory import make_oral_history

    ws, _, _ = tiny_asr_model
    path, truth = two_voices
    res = make_oral_history(load_model(ws / "models" / "tiny-asr", beam=1), path, tmp_path / "oral",
                            _glossary, "en", vad="silero", diarise=True, speakers=2)
    assert len(res.segments) == len(truth)
    assert _same_partition([s.speaker for s in res.segments], [w for *_, w in truth])
    eaf = pympi.Elan.Eaf(str(tmp_path / "oral" / "turns.eaf"))
    assert set(eaf.get_tier_names()) == {"transcription@speaker-1", "transcription@speaker-2",
                                         "translation-en@speaker-1", "translation-en@speaker-2"}
    for spk in ("speaker-1", "speaker-2"):
        tier = f"transcription@{spk}"
        assert eaf.tiers[tier][2]["PARTICIPANT"] == spk
        mine = sorted((a, b) for a, b, _ in eaf.get_annotation_data_for_tier(tier))
        assert mine == [(round(s.start * 1000), round(s.end * 1000)) for s in res.segments if s.speaker == spk]
        assert eaf.tiers[f"translation-en@{spk}"][2]["PARENT_REF"] == tier
    assert "Speakers: 2 told apart" in (tmp_path / "oral" / "turns.html").read_text(encoding="utf-8")


def test_an_out_that_is_a_file_is_one_line_before_any_work(recording, tmp_path):
    from hearthkit.errors import HearthError
    from hearthkit.transcribe.oralhistory import make_oral_history

    path, _ = recording
    taken = tmp_path / "notes.txt"
    taken.write_text("a steward's notes", encoding="utf-8")
    for out in (taken, taken / "oral"):  # the file itself, or a folder that would have to be made inside it
        # No model is needed: the refusal comes before the recording is read (lm is never touched).
        with pytest.raises(HearthError) as e:
            make_oral_history(None, path, out, vad="energy")
        assert "is a file, not a folder" in str(e.value) and "nothing was written" in str(e.value)
        assert "\n" not in str(e.value)
    assert taken.read_text(encoding="utf-8") == "a steward's notes"


def test_the_translation_language_is_the_models_and_a_mismatch_is_one_line():
    from hearthkit.errors import HearthError
    from hearthkit.transcribe.oralhistory import translation_language

    assert translation_language("st", "mboshi-st", ["fr"], None) == "fr"  # default: the model's target
    assert translation_language("mt", "m", ["en", "fr"], "fr") == "fr"
    for kind, targets, to, says in (("st", ["fr"], "en", "--to en: st model m translates into fr, not en"),
                                    ("mt", ["en", "fr"], None, "--to is needed: mt model m translates into en, fr"),
                                    ("mt", ["fr"], "xx", "translates into fr, not xx")):
        with pytest.raises(HearthError) as e:
            translation_language(kind, "m", targets, to)
        assert says in str(e.value) and "nothing was written" in str(e.value) and "\n" not in str(e.value)
