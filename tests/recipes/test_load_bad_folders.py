"""Issue 19 class 8c: a model folder with a broken config.json or weights is one line naming the file, not a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearthkit.errors import HearthError
from hearthkit.recipes.load import load_model_dir


def _folder(tmp_path: Path, config: str | None) -> Path:
    folder = tmp_path / "m"
    folder.mkdir()
    if config is not None:
        (folder / "config.json").write_text(config, encoding="utf-8")
    return folder


@pytest.mark.parametrize("config", ["{not json", "[]", json.dumps({"model": {}}), "\udcff"])
def test_a_config_that_is_not_a_model_config_names_the_file(tmp_path, config):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_bytes(config.encode("utf-8", "surrogateescape"))
    with pytest.raises(HearthError, match=r"config\.json: not a hearthkit model config") as exc:
        load_model_dir(folder)
    assert "object at 0x" not in str(exc.value)


def test_a_model_section_of_the_wrong_shape_names_the_field(tmp_path):
    folder = _folder(tmp_path, json.dumps({"recipe": "lm", "model": {"n_embd": 30, "n_head": 4, "unit": "char"}}))
    with pytest.raises(HearthError, match=r"config\.json: field model\.unit: unknown field; did you mean units\?"):
        load_model_dir(folder)


def test_weights_that_do_not_load_name_the_file(tmp_path):
    from hearthkit.recipes.lm.model import LMConfig

    folder = _folder(tmp_path, json.dumps({"recipe": "lm", "model": LMConfig(n_layer=1, n_head=2, n_embd=16)
                                           .model_dump()}))
    (folder / "prep").mkdir()
    (folder / "prep" / "chars.json").write_text(json.dumps(list("abc")))
    (folder / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(HearthError, match=r"model\.safetensors: does not hold this model's weights"):
        load_model_dir(folder)


@pytest.mark.parametrize("config", ["{not json", "[]", json.dumps({"model": {"n_embd": "wide"}})])
def test_a_parent_with_a_broken_config_is_refused_in_one_line(tmp_path, config):
    from hearthkit.recipes import get_recipe

    recipe = get_recipe("lm")
    folder = _folder(tmp_path, config)
    with pytest.raises(HearthError, match=r"init_from model m: .*config\.json is not a readable lm model config"):
        recipe.check_parent_shape(recipe.ModelConfig(), folder, ("n_embd",))
