"""Issue 19 class 5: a model's restrictions travel with every exported folder, signed over its weights, and a
folder that cannot show them (edited, swapped, deleted, foreign, README-only) is refused for every use."""

from __future__ import annotations

import json
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from hearthkit.catalog.context import open_workspace_catalog
from hearthkit.catalog.models import Community, Membership, Model, Person, Run
from hearthkit.engine.config import RunConfig
from hearthkit.engine.export import export_model
from hearthkit.errors import HearthError
from hearthkit.governance import audit
from hearthkit.governance.manifest import Manifest, Request
from hearthkit.launch.plan import _parent
from hearthkit.lineage import folder as mf
from hearthkit.lineage.publish import publish_model
from hearthkit.lineage.serving import authorize_use, record_use, resolve_use
from hearthkit.workspace import init_workspace

NC = "tk:non_commercial"


def _weights(path: Path, seed: int) -> None:
    torch.manual_seed(seed)
    save_file({"w": torch.randn(8)}, str(path))


def _registered(ws, catalog, name: str, restrictions: list[str], recipe: str = "asr", seed: int = 0) -> Path:
    """A published model of WS: folder (config, weights, card) and its registry rows."""
    folder = ws.models_dir / name
    folder.mkdir(parents=True)
    _weights(folder / "model.safetensors", seed)
    (folder / "config.json").write_text(json.dumps({"name": name, "recipe": recipe, "model": {}}))
    (folder / "model_card.md").write_text(f"---\nmodel_name: {name}\nhearthkit:\n  restrictions: []\n---\n# {name}\n")
    with catalog.session() as s:
        run = Run(name=name, recipe=recipe, purpose="research", requester="team", manifest_hash="0" * 64)
        s.add(run)
        s.flush()
        s.add(Model(name=name, run_id=run.id, path=str(folder), recipe=recipe, restrictions=restrictions,
                    attribution=["Ngāti Demo"], manifest_hash="0" * 64))
    return folder


@pytest.fixture
def home(tmp_path: Path):
    """Workspace `home` with model `nc` (non-commercial) exported to tmp/exported."""
    ws = init_workspace(tmp_path / "home")
    catalog = open_workspace_catalog(ws)
    _registered(ws, catalog, "nc", [NC])
    dest, restrictions = export_model(catalog, "nc", tmp_path / "exported", "research", "team")
    assert restrictions == [NC]
    yield ws, catalog, dest
    catalog.close()


def _steward(catalog, who: str, community: str) -> None:
    with catalog.session() as s:
        c, p = Community(name=community), Person(name=who)
        s.add_all([c, p])
        s.flush()
        s.add(Membership(person_id=p.id, community_id=c.id, role="steward"))


def test_export_writes_signed_restrictions_over_the_copied_weights(home):
    ws, _, dest = home
    doc = json.loads((dest / "restrictions.json").read_text())
    assert doc["model"] == "nc" and doc["workspace"] == ws.config.name and doc["restrictions"] == [NC]
    assert doc["attribution"] == ["Ngāti Demo"] and doc["weights"] == mf.weight_hashes(dest)
    assert mf.read_signed(dest, ws) == (doc, "")
    key = ws.keys_dir / "model-restrictions.secret"
    assert ws.root not in key.parents and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (dest / "README.md").is_file()


def test_the_exported_folder_cannot_be_served_commercially_and_the_refusal_is_audited(home):
    _, catalog, dest = home
    with pytest.raises(HearthError, match=f"inherits {NC} from its training data: no commercial use"):
        resolve_use(catalog, str(dest), "transcribe", "buyer", "commercial")
    refused = audit.events(catalog, "serve_refused")[-1]
    assert refused["actor"] == "buyer" and "no commercial use" in refused["data"]["reason"]
    served = resolve_use(catalog, str(dest), "transcribe", "team", "research")
    assert (served.name, served.source, served.restrictions) == ("nc", "signed", [NC])


def test_the_registry_still_rules_an_export_of_its_own_model(home):
    _, catalog, dest = home
    with catalog.session() as s:
        s.query(Model).filter_by(name="nc").update({"status": "revoked"})
    with pytest.raises(HearthError, match="nc is revoked"):
        resolve_use(catalog, str(dest), "transcribe", "team", "research")


def _drop_key(dest: Path, home_ws, tmp: Path) -> None:
    doc = json.loads((dest / "restrictions.json").read_text())
    doc["restrictions"] = []  # the signature is left as it was
    (dest / "restrictions.json").write_text(json.dumps(doc))


def _resign(dest: Path, home_ws, tmp: Path) -> None:
    doc = json.loads((dest / "restrictions.json").read_text())
    doc["restrictions"] = []
    doc["signature"]["value"] = mf._mac(b"k" * 32, doc)  # a key of one's own
    (dest / "restrictions.json").write_text(json.dumps(doc))


def _swap_weights(dest: Path, home_ws, tmp: Path) -> None:
    _weights(dest / "model.safetensors", seed=7)


def _delete(dest: Path, home_ws, tmp: Path) -> None:
    (dest / "restrictions.json").unlink()


def _garbage(dest: Path, home_ws, tmp: Path) -> None:
    (dest / "restrictions.json").write_text("{\"format\": ")


ATTACKS = {"edited file (a key dropped)": (_drop_key, "does not verify"),
           "re-signed with another key": (_resign, "does not verify"),
           "weights swapped": (_swap_weights, r"model\.safetensors\) are not the ones"),
           "file deleted": (_delete, r"no restrictions\.json \(a README\.md card is not machine-readable"),
           "file unreadable": (_garbage, "restrictions.json is not readable")}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_a_tampered_folder_keeps_its_restrictions_or_is_refused(home, tmp_path, attack):
    ws, catalog, dest = home
    tamper, why = ATTACKS[attack]
    tamper(dest, ws, tmp_path)
    if attack != "weights swapped":
        # The weights are still byte for byte those of registered model nc: the registry governs them by hash.
        with pytest.raises(HearthError, match="no commercial use"):
            resolve_use(catalog, str(dest), "transcribe", "buyer", "commercial")
        assert resolve_use(catalog, str(dest), "transcribe", "team", "research").restrictions == [NC]
        cfg = json.loads((dest / "config.json").read_text())
        (dest / "config.json").write_text(json.dumps({**cfg, "name": "renamed"}))  # no registered twin to find
    for purpose in ("research", "commercial"):
        with pytest.raises(HearthError, match=why) as exc:
            resolve_use(catalog, str(dest), "transcribe", "team", purpose)
        assert "a steward must register it" in str(exc.value) and "\n" not in str(exc.value)
    cfg = RunConfig.model_validate({"name": "child", "recipe": "asr", "model": {"init_from": str(dest)},
                                    "request": {"purpose": "research", "requester": "team",
                                                "collections": ["c"]}})
    with pytest.raises(HearthError, match=why):
        _parent(catalog, cfg)


def test_a_folder_signed_by_another_workspace_is_refused(home, tmp_path):
    ws, catalog, _ = home
    other = init_workspace(tmp_path / "other")
    ocat = open_workspace_catalog(other)
    _registered(other, ocat, "theirs", [], seed=3)  # unrestricted over there
    foreign, _ = export_model(ocat, "theirs", tmp_path / "foreign", "research", "team")
    ocat.close()
    with pytest.raises(HearthError, match="signed by another workspace"):
        resolve_use(catalog, str(foreign), "transcribe", "team", "commercial")


def test_a_readme_only_card_is_not_restrictions(home, tmp_path):
    _, catalog, dest = home
    bare = tmp_path / "bare"
    bare.mkdir()
    for f in ("model.safetensors", "config.json", "README.md"):
        shutil.copy2(dest / f, bare / f)
    # nc's own weights: recognised by hash, its registered restrictions kept whatever the card says.
    with pytest.raises(HearthError, match="no commercial use"):
        resolve_use(catalog, str(bare), "translate", "buyer", "commercial")
    _weights(bare / "model.safetensors", seed=9)  # any other weights with only a card: refused
    with pytest.raises(HearthError, match="a README.md card is not machine-readable restrictions"):
        resolve_use(catalog, str(bare), "transcribe", "team", "research")


def test_a_commercial_run_cannot_start_from_the_exported_non_commercial_model(home):
    _, catalog, dest = home
    cfg = RunConfig.model_validate({"name": "child", "recipe": "asr", "model": {"init_from": str(dest)},
                                    "request": {"purpose": "commercial", "requester": "team",
                                                "collections": ["c"]}})
    with pytest.raises(HearthError, match="no commercial use"):
        _parent(catalog, cfg)


def test_a_child_of_the_exported_folder_inherits_and_re_signs_its_restrictions(home, tmp_path):
    ws, catalog, dest = home
    run_dir = ws.run_dir("child")
    (run_dir / "final").mkdir(parents=True)
    (run_dir / "prep").mkdir()
    _weights(run_dir / "final" / "model.safetensors", seed=11)
    cfg = {"name": "child", "recipe": "asr", "model": {"init_from": str(dest)},
           "request": {"purpose": "research", "requester": "team", "collections": ["c"]}}
    manifest = Manifest(Request("research", "team", ("c",), "2026-12-01"))
    mhash = manifest.write(run_dir / "manifest.json")
    (run_dir / "run.json").write_text(json.dumps({"config": cfg, "manifest_hash": mhash}))
    (run_dir / "split.json").write_text(json.dumps({"train": [], "test": []}))
    with catalog.session() as s:
        s.add(Run(name="child", recipe="asr", purpose="research", requester="team", manifest_hash=mhash))
    publish_model(ws, catalog, run_dir, {"rows": [], "gaps": {}, "metrics": ["wer"], "signatures": {}})
    with catalog.session() as s:
        child = s.query(Model).filter_by(name="child").one()
        assert child.restrictions == [NC]
        assert child.parent_id == s.query(Model).filter_by(name="nc").one().id  # the export's own model
    out = ws.models_dir / "child"
    doc, why = mf.read_signed(out, ws)
    assert why == "" and doc["restrictions"] == [NC] and doc["parents"][0]["model"] == "nc"
    # ... and the child, exported in turn, still refuses commercial use.
    child_export, restrictions = export_model(catalog, "child", tmp_path / "child-export", "research", "team")
    assert restrictions == [NC]
    with pytest.raises(HearthError, match="no commercial use"):
        resolve_use(catalog, str(child_export), "transcribe", "buyer", "commercial")


def test_a_steward_registers_a_foreign_folder_with_restrictions_and_it_is_audited(home, tmp_path):
    _, catalog, _ = home
    partner = tmp_path / "partner"
    partner.mkdir()
    _weights(partner / "model.safetensors", seed=5)
    (partner / "config.json").write_text(json.dumps({"name": "partner", "recipe": "asr", "model": {}}))
    _steward(catalog, "aroha", "Ngāti Demo")
    with catalog.session() as s, pytest.raises(HearthError, match="mallory is not a steward of Ngāti Demo"):
        mf.register_external(s, partner, "partner-asr", "Ngāti Demo", "mallory", [NC], None)
    with catalog.session() as s, pytest.raises(HearthError, match="--restriction 'tk:nope'"):
        mf.register_external(s, partner, "partner-asr", "Ngāti Demo", "aroha", ["tk:nope"], None)
    with catalog.session() as s:
        mf.register_external(s, partner, "partner-asr", "Ngāti Demo", "aroha", [NC], "from the language centre")
    ev = audit.events(catalog, "external_model")[-1]
    assert ev["actor"] == "aroha" and ev["data"]["restrictions"] == [NC]
    for ref in (str(partner), "partner-asr"):
        with pytest.raises(HearthError, match="no commercial use"):
            resolve_use(catalog, ref, "transcribe", "buyer", "commercial")
        assert resolve_use(catalog, ref, "transcribe", "team", "research").source == "external"
    _weights(partner / "model.safetensors", seed=6)  # other weights are another model: no longer registered
    with pytest.raises(HearthError, match="a steward must register it"):
        resolve_use(catalog, str(partner), "transcribe", "team", "research")


def test_registering_keeps_what_the_folder_already_carries(home, tmp_path):
    _, catalog, _ = home
    other = init_workspace(tmp_path / "other")
    ocat = open_workspace_catalog(other)
    _registered(other, ocat, "theirs", [NC], seed=3)
    foreign, _ = export_model(ocat, "theirs", tmp_path / "foreign", "research", "team")
    ocat.close()
    _steward(catalog, "aroha", "Ngāti Demo")
    with catalog.session() as s:
        ext = mf.register_external(s, foreign, "theirs-here", "Ngāti Demo", "aroha", [], None)
        assert ext.restrictions == [NC]  # a steward's registration adds, never removes


def test_serving_by_name_checks_then_records_counts_only(home):
    _, catalog, _ = home
    m = authorize_use(catalog, "nc", "transcribe", "team", "research")
    record_use(catalog, m.name, "transcribe", "team", "research", seconds=12.5, segments=3)
    ev = audit.events(catalog, "serve")[-1]
    assert ev["data"] == {"model": "nc", "action": "transcribe", "purpose": "research", "seconds": 12.5,
                          "segments": 3}
    with pytest.raises(HearthError, match="nc is a asr model; translate needs a mt model"):
        authorize_use(catalog, "nc", "translate", "team", "research")
    with pytest.raises(HearthError, match="no commercial use"):
        authorize_use(catalog, "nc", "transcribe", "team", "commercial")
    assert [e["data"]["action"] for e in audit.events(catalog, "serve_refused")] == ["translate", "transcribe"]


def test_hearth_models_register_is_a_stewards_one_line_command(home, tmp_path):
    from tests.conftest import hearth

    ws, catalog, _ = home
    partner = tmp_path / "partner"
    partner.mkdir()
    _weights(partner / "model.safetensors", seed=5)
    (partner / "config.json").write_text(json.dumps({"name": "partner", "recipe": "asr", "model": {}}))
    _steward(catalog, "aroha", "Ngāti Demo")
    bad = hearth("models", "register", str(partner), "--name", "p", "--community", "Ngāti Demo", "--by", "mallory",
                 ws=ws.root, check=False)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "not a steward" in bad.stderr
    out = hearth("models", "register", str(partner), "--name", "p", "--community", "Ngāti Demo", "--by", "aroha",
                 "--restriction", NC, "--note", "from the language centre", ws=ws.root).stdout
    assert "registered p" in out and NC in out
    assert '"model": "p"' in hearth("audit", "log", "--kind", "external_model", ws=ws.root).stdout
