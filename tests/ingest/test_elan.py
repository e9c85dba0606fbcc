"""ELAN .eaf and Praat TextGrid import: segments become items with consent; hostile or broken XML stores nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from sqlalchemy import select
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import Item
from hearthkit.cli.main import app
from hearthkit.ingest.elan import read_eaf
from hearthkit.ingest.sealing import item_words
from hearthkit.ingest.textgrid import read_textgrid
from hearthkit.store.text import SEALED_TEXT
from hearthkit.store.vault import workspace_store
from hearthkit.transcribe.formats import Segment, to_eaf
from hearthkit.workspace import open_workspace

ARCHIVE = {
    "collection": {"name": "korero-review", "community": "Te Hapori Tauira"},
    "collective_consent": [{"subject": "Te Hapori Tauira", "given_by": "council", "given_at": "2026-03-01",
                            "purposes": ["language_revitalization"]}],
    "individual_consent": [{"subject": "mere", "given_by": "mere", "given_at": "2026-03-02",
                            "purposes": ["language_revitalization"]}],
}

EAF = """<?xml version="1.0" encoding="UTF-8"?>
<ANNOTATION_DOCUMENT AUTHOR="x" FORMAT="3.0" VERSION="3.0">
 <HEADER MEDIA_FILE="" TIME_UNITS="milliseconds">
  <MEDIA_DESCRIPTOR MEDIA_URL="file:///somewhere/else/{audio}" MIME_TYPE="audio/x-wav" RELATIVE_MEDIA_URL="./{audio}"/>
 </HEADER>
 <TIME_ORDER>
  <TIME_SLOT TIME_SLOT_ID="ts1" TIME_VALUE="500"/><TIME_SLOT TIME_SLOT_ID="ts2" TIME_VALUE="1500"/>
  <TIME_SLOT TIME_SLOT_ID="ts3" TIME_VALUE="2000"/><TIME_SLOT TIME_SLOT_ID="ts4" TIME_VALUE="3250"/>
  <TIME_SLOT TIME_SLOT_ID="ts5"/>
 </TIME_ORDER>
 <TIER TIER_ID="mere" PARTICIPANT="mere" LINGUISTIC_TYPE_REF="utt">
  <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2">
   <ANNOTATION_VALUE>Kei te haere te tamaiti.</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
  <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a2" TIME_SLOT_REF1="ts3" TIME_SLOT_REF2="ts4">
   <ANNOTATION_VALUE>he pai te whare</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
  <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a3" TIME_SLOT_REF1="ts4" TIME_SLOT_REF2="ts5">
   <ANNOTATION_VALUE>unaligned</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
 </TIER>
 <TIER TIER_ID="english" PARENT_REF="mere" LINGUISTIC_TYPE_REF="translation">
  <ANNOTATION><REF_ANNOTATION ANNOTATION_ID="a4" ANNOTATION_REF="a1">
   <ANNOTATION_VALUE>The child is going.</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION>
 </TIER>
 <LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="utt" TIME_ALIGNABLE="true"/>
</ANNOTATION_DOCUMENT>
"""

TEXTGRID_LONG = '''File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 4
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "words"
        xmin = 0
        xmax = 4
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.5
            text = ""
        intervals [2]:
            xmin = 0.5
            xmax = 1.5
            text = "kei te ""haere"""
        intervals [3]:
            xmin = 1.5
            xmax = 4
            text = "he pai"
    item [2]:
        class = "TextTier"
        name = "events"
        xmin = 0
        xmax = 4
        points: size = 1
        points [1]:
            number = 1.0
            mark = "cough"
'''

TEXTGRID_SHORT = '''File type = "ooTextFile"
Object class = "TextGrid"

0
4
<exists>
1
"IntervalTier"
"words"
0
4
2
0.5
1.5
"kei te haere"
1.5
4
"he pai"
'''


class _Result:
    def __init__(self, r):
        self.returncode, self.stdout, self.stderr = r.exit_code, r.stdout, r.stderr


def hearth(*args: str, ws: Path, check: bool = True) -> _Result:
    """The real CLI, in-process (these tests call it often; a subprocess each time would dominate their time)."""
    res = _Result(CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"}))
    if check and res.returncode != 0:
        raise AssertionError(f"hearth {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res


def _recording(path: Path, seconds: float = 4.0) -> Path:
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000, subtype="PCM_16")
    return path


def _review_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "review"
    folder.mkdir()
    (folder / "archive.yaml").write_text(yaml.safe_dump(ARCHIVE))
    _recording(folder / "interview.wav")
    (folder / "interview.eaf").write_text(EAF.format(audio="interview.wav"), encoding="utf-8")
    return folder


def _items(ws: Path) -> list[tuple]:
    with sqlite3.connect(ws / "catalog.sqlite") as db:
        return db.execute("select external_id, text, speaker, duration_s, meta from items "
                          "order by external_id").fetchall()


def _store_files(ws: Path) -> set[Path]:
    return {p for p in (ws / "store").rglob("*") if p.is_file()}


def test_eaf_tiers_become_segments_with_speaker_and_translation(tmp_path):
    folder = _review_folder(tmp_path)
    anns, media = read_eaf(folder / "interview.eaf")
    assert [(a.start, a.end, a.speaker) for a in anns] == [(0.5, 1.5, "mere"), (2.0, 3.25, "mere")]
    assert anns[0].extra == {"english": "The child is going."}
    assert "./interview.wav" in media


def test_import_eaf_stores_cut_segments_and_updates_corrections(workspace, tmp_path):
    folder = _review_folder(tmp_path)
    out = hearth("data", "import-eaf", str(folder / "interview.eaf"), ws=workspace).stdout
    assert "2 segments imported" in out
    items = _items(workspace)
    assert [(i[0], i[1], i[2]) for i in items] == [("interview@2000-3250", "he pai te whare", "mere"),
                                                   ("interview@500-1500", "Kei te haere te tamaiti.", "mere")]
    assert abs(items[1][3] - 1.0) < 0.01 and abs(items[0][3] - 1.25) < 0.01  # the item's audio is the cut segment
    assert '"start_s": 0.5' in items[1][4] and '"english": "The child is going."' in items[1][4]
    # A corrected file re-imported: the same segment's transcript is updated, nothing is duplicated.
    eaf = (folder / "interview.eaf").read_text().replace("he pai te whare", "he pai rawa te whare")
    (folder / "interview.eaf").write_text(eaf)
    out = hearth("data", "import-eaf", str(folder / "interview.eaf"), ws=workspace).stdout
    assert "0 segments imported, 1 corrected, 1 unchanged" in out
    assert [i[1] for i in _items(workspace)] == ["he pai rawa te whare", "Kei te haere te tamaiti."]


def test_corrections_to_a_restricted_collection_stay_sealed(workspace, tmp_path):
    folder = _review_folder(tmp_path)
    info = yaml.safe_load((folder / "archive.yaml").read_text())
    info["collection"]["restricted"] = True
    (folder / "archive.yaml").write_text(yaml.safe_dump(info))
    hearth("data", "import-eaf", str(folder / "interview.eaf"), ws=workspace)
    eaf = (folder / "interview.eaf").read_text().replace("he pai te whare", "he pai rawa te whare")
    (folder / "interview.eaf").write_text(eaf)
    assert "1 corrected" in hearth("data", "import-eaf", str(folder / "interview.eaf"), ws=workspace).stdout
    rows = _items(workspace)
    assert all(text is None for _, text, *_ in rows)  # no transcript on the rows
    assert not any("whare" in meta or "The child" in meta for *_, meta in rows)  # nor a translation or the old text
    ws = open_workspace(workspace)
    store, catalog = workspace_store(ws), Catalog.open(ws.db_url)
    with catalog.session() as s:
        corrected = s.scalar(select(Item).where(Item.external_id == "interview@2000-3250"))
        assert item_words(store, corrected) == ("he pai rawa te whare", {
            **{k: v for k, v in corrected.meta.items() if k != SEALED_TEXT}, "previous_text": "he pai te whare",
            "corrections": [{"text": "he pai te whare"}]})
        other = s.scalar(select(Item).where(Item.external_id == "interview@500-1500"))
        assert item_words(store, other)[1]["tiers"] == {"english": "The child is going."}
    # One sealed text object per segment: the words before the correction were erased, not left behind.
    assert store.is_sealed(corrected.meta[SEALED_TEXT]) and store.is_sealed(other.meta[SEALED_TEXT])
    sealed_files = [p for p in (ws.store_dir / "sealed").rglob("*") if p.is_file()]
    assert len(sealed_files) == 2 + 2  # two segments' audio, two segments' words


def test_textgrid_long_and_short_formats_read_the_same(tmp_path):
    (tmp_path / "long.TextGrid").write_text(TEXTGRID_LONG)
    (tmp_path / "short.TextGrid").write_bytes(TEXTGRID_SHORT.encode("utf-16"))  # Praat writes UTF-16 too
    long, short = read_textgrid(tmp_path / "long.TextGrid"), read_textgrid(tmp_path / "short.TextGrid")
    assert [(a.start, a.end, a.tier) for a in long] == [(0.5, 1.5, "words"), (1.5, 4.0, "words")]
    assert long[0].text == 'kei te "haere"' and [a.text for a in short] == ["kei te haere", "he pai"]


def test_import_textgrid_with_speaker_option(workspace, tmp_path):
    folder = _review_folder(tmp_path)
    (folder / "interview.TextGrid").write_text(TEXTGRID_SHORT)
    out = hearth("data", "import-eaf", str(folder / "interview.TextGrid"), "--speaker", "mere", ws=workspace).stdout
    assert "2 segments imported" in out
    assert {i[2] for i in _items(workspace)} == {"mere"}


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<ANNOTATION_DOCUMENT><TIER TIER_ID="t">&lol3;</TIER></ANNOTATION_DOCUMENT>
"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<ANNOTATION_DOCUMENT><TIER TIER_ID="t"><ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1"
 TIME_SLOT_REF2="ts2"><ANNOTATION_VALUE>&secret;</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION></TIER>
</ANNOTATION_DOCUMENT>
"""


def test_bad_annotation_files_are_one_line_and_store_nothing(workspace, tmp_path):
    folder = _review_folder(tmp_path)
    hearth("data", "import-eaf", str(folder / "interview.eaf"), ws=workspace)
    before_items, before_store = _items(workspace), _store_files(workspace)
    cases = {"bomb.eaf": (BOMB, "refused"), "xxe.eaf": (XXE, "refused"),
             "broken.eaf": ("<ANNOTATION_DOCUMENT><TIER>", "not well-formed XML"),
             "other.eaf": ("<html><body/></html>", "not an ELAN file"),
             "bad.TextGrid": ('File type = "ooTextFile"\nObject class = "Pitch"\n', "not a Praat TextGrid")}
    for name, (text, reason) in cases.items():
        (folder / name).write_text(text)
        # The bad file comes second: the good file before it must not be imported either.
        proc = hearth("data", "import-eaf", str(folder / "interview.eaf"), str(folder / name), ws=workspace,
                      check=False)
        assert proc.returncode == 2, name
        assert reason in proc.stderr and name in proc.stderr, name
        assert len(proc.stderr.strip().splitlines()) == 1, name
    assert _items(workspace) == before_items and _store_files(workspace) == before_store


def test_media_urls_outside_the_folder_are_not_followed_and_spans_are_checked(workspace, tmp_path):
    folder = _review_folder(tmp_path)
    (folder / "interview.wav").rename(folder / "moved.wav")
    (folder / "interview.eaf").write_text(EAF.format(audio="../../../../etc/passwd"))
    proc = hearth("data", "import-eaf", str(folder / "interview.eaf"), ws=workspace, check=False)
    assert proc.returncode == 2 and "its recording was not found beside it" in proc.stderr
    _recording(folder / "short.wav", seconds=2.5)  # the second segment ends at 3.25 s: outside this recording
    proc = hearth("data", "import-eaf", str(folder / "interview.eaf"), "--audio", str(folder / "short.wav"),
                  ws=workspace, check=False)
    assert proc.returncode == 1 and "lies outside the recording" in proc.stdout
    assert [i[0] for i in _items(workspace)] == ["short@500-1500"]


def test_written_eaf_reads_back(tmp_path):
    segs = [Segment(0.5, 1.25, "kei te haere", "mere"), Segment(2.0, 3.0, "he pai", "hemi")]
    (tmp_path / "a.eaf").write_text(to_eaf(segs, tmp_path / "a.wav"))
    anns, _ = read_eaf(tmp_path / "a.eaf")
    assert [(a.start, a.end, a.text, a.speaker) for a in anns] == [(s.start, s.end, s.text, s.speaker) for s in segs]


TWO_LANGS = """<?xml version="1.0" encoding="UTF-8"?>
<ANNOTATION_DOCUMENT AUTHOR="x" FORMAT="3.0" VERSION="3.0">
 <HEADER MEDIA_FILE="" TIME_UNITS="milliseconds">
  <MEDIA_DESCRIPTOR MEDIA_URL="file:///x/interview.wav" MIME_TYPE="audio/x-wav" RELATIVE_MEDIA_URL="./interview.wav"/>
 </HEADER>
 <TIME_ORDER>
  <TIME_SLOT TIME_SLOT_ID="ts1" TIME_VALUE="500"/><TIME_SLOT TIME_SLOT_ID="ts2" TIME_VALUE="1500"/>
 </TIME_ORDER>
 <TIER TIER_ID="transcription" PARTICIPANT="mere" LINGUISTIC_TYPE_REF="utt">
  <ANNOTATION><ALIGNABLE_ANNOTATION ANNOTATION_ID="a1" TIME_SLOT_REF1="ts1" TIME_SLOT_REF2="ts2">
   <ANNOTATION_VALUE>kei te haere</ANNOTATION_VALUE></ALIGNABLE_ANNOTATION></ANNOTATION>
 </TIER>
 {tiers}
 <LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="utt" TIME_ALIGNABLE="true"/>
 <LINGUISTIC_TYPE LINGUISTIC_TYPE_ID="translation" TIME_ALIGNABLE="false"/>
</ANNOTATION_DOCUMENT>
"""
TIER = """<TIER TIER_ID="translation-{lang}" PARENT_REF="transcription" LINGUISTIC_TYPE_REF="translation">
  <ANNOTATION><REF_ANNOTATION ANNOTATION_ID="t{lang}" ANNOTATION_REF="a1">
   <ANNOTATION_VALUE>{text}</ANNOTATION_VALUE></REF_ANNOTATION></ANNOTATION></TIER>"""


def test_a_reimport_with_one_language_corrects_it_and_keeps_the_others_and_what_it_replaced(workspace, tmp_path):
    """An item with fr and en translations, re-imported from a file carrying only a corrected translation-fr: en
    stays, fr is corrected, the old fr is kept as previous_translations; in a sealed collection, in its sealed
    text object (the object replaced is erased only because its words all live on in the new one)."""
    folder = _review_folder(tmp_path)
    info = yaml.safe_load((folder / "archive.yaml").read_text())
    info["collection"]["restricted"] = True
    (folder / "archive.yaml").write_text(yaml.safe_dump(info))
    eaf = folder / "interview.eaf"
    both = TIER.format(lang="fr", text="il va") + TIER.format(lang="en", text="he goes")
    eaf.write_text(TWO_LANGS.replace("{tiers}", both), encoding="utf-8")
    hearth("data", "import-eaf", str(eaf), ws=workspace)
    eaf.write_text(TWO_LANGS.replace("{tiers}", TIER.format(lang="fr", text="l'enfant s'en va")), encoding="utf-8")
    assert "0 segments imported, 1 corrected" in hearth("data", "import-eaf", str(eaf), ws=workspace).stdout
    ws = open_workspace(workspace)
    store, catalog = workspace_store(ws), Catalog.open(ws.db_url)
    with catalog.session() as s:
        item = s.scalar(select(Item).where(Item.external_id == "interview@500-1500"))
        text, meta = item_words(store, item)
    assert text == "kei te haere" and "previous_text" not in meta  # the transcript was not corrected
    assert meta["translations"] == {"fr": "l'enfant s'en va", "en": "he goes"}
    assert meta["previous_translations"] == {"fr": "il va"}
    assert "translations" not in item.meta and "previous_translations" not in item.meta  # sealed, not on the row
    # The same file again changes nothing; a file with the translations as they are now neither.
    assert "1 unchanged" in hearth("data", "import-eaf", str(eaf), ws=workspace).stdout
    sealed_files = [p for p in (ws.store_dir / "sealed").rglob("*") if p.is_file()]
    assert len(sealed_files) == 1 + 1  # the segment's audio and its one words object
    # A second correction of the same language: the last replaced is previous_translations, and every replaced
    # version stays in corrections (oldest first) — the first correction's words are not lost.
    eaf.write_text(TWO_LANGS.replace("{tiers}", TIER.format(lang="fr", text="l'enfant part")), encoding="utf-8")
    assert "1 corrected" in hearth("data", "import-eaf", str(eaf), ws=workspace).stdout
    with catalog.session() as s:
        text, meta = item_words(store, s.scalar(select(Item).where(Item.external_id == "interview@500-1500")))
    assert meta["translations"] == {"fr": "l'enfant part", "en": "he goes"}
    assert meta["previous_translations"] == {"fr": "l'enfant s'en va"}
    assert meta["corrections"] == [{"translations": {"fr": "il va"}}, {"translations": {"fr": "l'enfant s'en va"}}]
