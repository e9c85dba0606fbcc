"""Issue 20 point 8: every recipe's model card is one the Hugging Face Hub's own parser accepts, results intact."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from hearthkit.governance.manifest import Manifest, Request
from hearthkit.lineage.card import HUB_METRICS, HUB_TASKS, LICENSE_NAME, model_card
from hearthkit.recipes import REGISTRY, get_recipe

# The model section each recipe's card reads languages from (mt pairs; lm's lang); the others have none.
MODEL = {"mt": {"pairs": ["es-nah", "nah-es"]}, "lm": {"lang": "nah"}}
# The Hub's task ids (hub-docs tasks list); a card must use one of these for pipeline_tag and task.type.
HUB_TASK_IDS = {"automatic-speech-recognition", "translation", "text-generation", "image-segmentation",
                "audio-classification"}


def _card(tmp_path: Path, recipe: str, base: dict | None = None) -> tuple[ModelCard, list[dict], tuple[str, ...]]:
    metrics = tuple(get_recipe(recipe).metric_names)
    rows = [{"by": "overall", "group": "all", "n": 12, **{m: 0.125 * (i + 1) for i, m in enumerate(metrics)}},
            {"by": "speaker", "group": "hemi", "n": 5, **{m: 0.25 * (i + 1) for i, m in enumerate(metrics)}},
            {"by": "speaker", "group": "mere", "n": 1, **{m: math.nan for m in metrics}}]  # nothing to score
    manifest = Manifest(Request("research", "team", ("demo-korero",), "2026-12-01"))
    text = model_card(f"demo-{recipe}", recipe, manifest, 40, 12, rows, {}, metrics,
                      {"recipe": recipe, "model": MODEL.get(recipe, {})}, base=base)
    path = tmp_path / recipe / "README.md"
    path.parent.mkdir(parents=True)
    path.write_text(text, encoding="utf-8")
    return ModelCard.load(path), rows, metrics  # raises on a model-index the Hub cannot parse


@pytest.mark.parametrize("recipe", sorted(REGISTRY))
def test_every_recipes_card_loads_with_the_hubs_parser_and_keeps_its_results(tmp_path, recipe):
    card, rows, metrics = _card(tmp_path, recipe)
    data = card.data
    assert recipe in HUB_TASKS and data.pipeline_tag == HUB_TASKS[recipe] and data.pipeline_tag in HUB_TASK_IDS
    assert data.license == "other" and data.license_name == LICENSE_NAME and data.license_link
    results = data.eval_results
    assert len(results) == len(rows) * len(metrics)
    got = {(r.dataset_split, r.metric_type): r.metric_value for r in results}
    for row in rows:
        for m in metrics:
            want = None if math.isnan(row[m]) else round(row[m], 4)
            assert got[(f"held-out, {row['by']}={row['group']}", HUB_METRICS.get(m, m))] == want
    assert {r.task_type for r in results} == {HUB_TASKS[recipe]}
    assert all(r.dataset_type == "demo-korero" and r.dataset_name == "demo-korero" for r in results)
    if recipe == "mt":
        assert data.language == ["es", "nah"]
    assert data.to_dict()["hearthkit"]["recipe"] == recipe  # hearthkit's own metadata survives beside the Hub's


def test_a_card_of_a_fine_tuned_model_names_its_base_for_the_hub(tmp_path):
    base = {"name": "mms", "path": "/bases/mms", "content_hash": "ab" * 32, "architecture": "wav2vec2",
            "licence": "CC-BY-NC-4.0", "source": "https://huggingface.co/facebook/mms-300m", "labels": [],
            "training_data": None}
    card, _, _ = _card(tmp_path, "asr", base=base)
    assert card.data.base_model == "facebook/mms-300m"
    assert "bc:non_commercial" in card.data.to_dict()["hearthkit"]["restrictions"]
    assert card.data.to_dict()["hearthkit"]["base"]["content_hash"] == "ab" * 32
    assert "## Base model (pretrained)" in card.text and "undeclared" in card.text
