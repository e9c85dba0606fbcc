"""Disaggregated evaluation against a hand-computed example; charts; speaker-disjoint splits; `hearth eval`."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from PIL import Image

from hearthkit.data.split import split_entries
from hearthkit.evaluate.chart import bar_chart
from hearthkit.evaluate.metrics import bootstrap_ci, disaggregate, gaps
from tests.conftest import hearth

# Two speakers; edits counted by hand:
#   ana: "abcd"->"abcd" 0 char edits, 0/1 words; "ab"->"ax" 1 char edit, 1/1 words  => CER 1/6, WER 1/2
#   ben: "hello"->"hallo" 1/5 chars, 1/1 words; "xyz"->"" 3/3 chars, 1/1 words    => CER 4/8, WER 2/2
RECORDS = [
    {"speaker": "ana", "dialect": "raki", "reference": "abcd", "hypothesis": "abcd"},
    {"speaker": "ana", "dialect": "tonga", "reference": "ab", "hypothesis": "ax"},
    {"speaker": "ben", "dialect": "tonga", "reference": "hello", "hypothesis": "hallo"},
    {"speaker": "ben", "dialect": "tonga", "reference": "xyz", "hypothesis": ""},
]


def test_per_group_table_matches_the_hand_computed_example():
    rows = {(r["by"], r["group"]): r for r in disaggregate(RECORDS, ["speaker", "dialect"])}
    assert rows[("overall", "all")]["n"] == 4
    assert rows[("overall", "all")]["cer"] == pytest.approx(5 / 14)
    assert rows[("overall", "all")]["wer"] == pytest.approx(3 / 4)
    assert rows[("speaker", "ana")]["cer"] == pytest.approx(1 / 6)
    assert rows[("speaker", "ana")]["wer"] == pytest.approx(1 / 2)
    assert rows[("speaker", "ben")]["cer"] == pytest.approx(4 / 8)
    assert rows[("speaker", "ben")]["wer"] == pytest.approx(1.0)
    assert rows[("dialect", "raki")]["cer"] == 0.0 and rows[("dialect", "raki")]["n"] == 1
    assert rows[("dialect", "tonga")]["cer"] == pytest.approx(5 / 10)
    g = gaps(list(rows.values()))
    assert g["speaker"]["cer"] == pytest.approx(4 / 8 - 1 / 6) and g["speaker"]["wer"] == pytest.approx(0.5)
    assert g["dialect"]["cer"] == pytest.approx(0.5)


def test_bootstrap_interval_brackets_the_estimate_and_needs_two_items():
    lo, hi = bootstrap_ci(RECORDS, "cer", n=300)
    assert 0.0 <= lo <= 5 / 14 <= hi <= 1.0 and lo < hi
    assert all(math.isnan(x) for x in bootstrap_ci(RECORDS[:1], "cer"))


def test_bar_chart_has_one_bar_per_row(tmp_path):
    rows = disaggregate(RECORDS, ["speaker"])
    path = bar_chart(rows, "cer", tmp_path / "cer.png", title="CER")
    img = Image.open(path)
    assert img.format == "PNG" and img.height > 3 * 22
    # Bars are drawn in the bar colour at their rows; the overall bar (darker) spans 5/14 of the scale.
    assert img.getpixel((235, 40 + 11)) == (0x30, 0x50, 0x6E)


def test_speaker_disjoint_split():
    entries = [{"item_id": i, "speaker": s, "text": f"t{i % 3}"} for i, s in enumerate(["a", "b", "c"] * 4)]
    train, test = split_entries(entries, 0.0, by="speaker", test_values=["c"])
    assert {e["speaker"] for e in test} == {"c"} and "c" not in {e["speaker"] for e in train}
    assert len(train) + len(test) == len(entries)


@pytest.mark.slow
def test_hearth_eval_prints_table_writes_card_rows_and_charts(tiny_asr_model):
    ws, _, _ = tiny_asr_model
    out = hearth("eval", "tiny-asr", "--by", "speaker", "--by", "gender", "--by", "sentence", "--beam", "1",
                 ws=ws).stdout
    assert "95% CI" in out and "gap (worst - best) by speaker" in out
    folder = ws / "models" / "tiny-asr"
    evaluation = json.loads((folder / "evaluation.json").read_text())
    groups = {(r["by"], r["group"]) for r in evaluation["rows"]}
    assert ("gender", "female") in groups and any(b == "sentence" for b, _ in groups)  # a metadata column
    card = (folder / "model_card.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---", 2)[1])
    splits = [r["dataset"]["split"] for r in front["model-index"][0]["results"]]
    assert "held-out, gender=female" in splits and len(splits) == 2 * len(evaluation["rows"])
    for m in ("cer", "wer"):
        assert Image.open(folder / f"eval_{m}.png").format == "PNG"
