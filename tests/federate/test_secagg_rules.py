"""Secure aggregation without processes: the config's rules, the generated Flower app passing Flower's own checks,
and the coordinator's strategy on replies whose weights SecAgg+ has already summed (a refused reply refuses the
round; signatures cover the report, not the weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hearthkit.errors import HearthError

SITES = {"north": "Te Hapori Raki", "south": "Te Hapori Tonga", "east": "Te Hapori Rāwhiti"}
MODEL = {"arch": "bigru", "n_mels": 40, "conv_channels": 8, "hidden": 16, "layers": 1, "spec_augment": False}


def _fed(tmp_path: Path, sites=SITES, **extra) -> Path:
    p = tmp_path / "fed.yaml"
    p.write_text(yaml.safe_dump({"name": "fed-asr", "model": MODEL, "units": "abc '", "local_steps": 2,
                                 "batch_size": 4, "insecure": True, "secure_aggregation": True,
                                 "sites": [{"name": s, "community": c} for s, c in sites.items()], **extra},
                                allow_unicode=True), encoding="utf-8")
    return p


def test_secure_aggregation_config_defaults_and_refusals(tmp_path: Path):
    from hearthkit.federate.config import load_federation
    from hearthkit.federate.secagg import card_section, quantisation_step, settings

    cfg = load_federation(_fed(tmp_path))
    assert cfg.secure_aggregation.enabled
    assert settings(cfg) == {"num_shares": 3, "reconstruction_threshold": 2, "clipping_range": 8.0,
                             "quantization_range": 2**22, "max_weight": 8.0}
    assert quantisation_step(cfg) == pytest.approx(16 / 2**22)
    assert "secure aggregation: SecAgg+ (3 shares, threshold 2)" in card_section(cfg)
    assert not load_federation(_fed(tmp_path, secure_aggregation=False)).secure_aggregation.enabled

    for extra, words in [({"sites": dict(list(SITES.items())[:2])}, "3 or more sites"),
                         ({"secure_aggregation": {"enabled": True, "threshold": 3}}, "must be below num_shares"),
                         ({"secure_aggregation": {"enabled": True, "quantization_range": 3000}}, "a power of two"),
                         ({"privacy": {"clip": 1.0}}, "use one or the other"),
                         ({"secure_aggregation": {"enabled": True, "shares": 3}}, "secure_aggregation")]:
        sites = extra.pop("sites", SITES)
        with pytest.raises(HearthError) as err:
            load_federation(_fed(tmp_path, sites=sites, **extra))
        msg = str(err.value)
        assert msg.startswith(str(tmp_path / "fed.yaml")) and words in msg and "\n" not in msg, msg


def test_generated_app_passes_flowers_checks_and_names_hearthkits_apps(tmp_path: Path):
    import tomllib

    from flwr.client import ClientApp
    from flwr.server import ServerApp
    from flwr.supercore.object_ref import load_app, validate

    from hearthkit.federate.secagg import write_app

    app = write_app(tmp_path / "coord")
    assert [p.name for p in app.iterdir()] == ["pyproject.toml"]  # no code travels to the sites
    conf = tomllib.loads((app / "pyproject.toml").read_text())
    comps = conf["tool"]["flwr"]["app"]["components"]
    assert conf["tool"]["flwr"]["app"]["config"]["folder"] == str((tmp_path / "coord").resolve())
    for ref, kind in [(comps["serverapp"], ServerApp), (comps["clientapp"], ClientApp)]:
        assert ref.startswith("hearthkit.federate.secagg:")
        assert validate(ref, project_dir=app) == (True, None)  # what `flwr run` checks before submitting
        assert isinstance(load_app(ref, ValueError, app), kind)


def _strategy(tmp_path: Path, insecure: bool):
    from hearthkit.federate.config import load_federation
    from hearthkit.federate.secagg import SecureGoverned
    from hearthkit.federate.signing import public_key_text, site_key

    keys = {s: site_key(tmp_path / f"keys-{s}") for s in SITES}
    p = _fed(tmp_path, insecure=insecure)
    data = yaml.safe_load(p.read_text())
    for s in data["sites"]:
        s["public_key"] = public_key_text(keys[s["name"]])
    p.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    cfg = load_federation(p)
    names, current = ["w"], [np.zeros(6, np.float32)]
    said: list[str] = []
    return SecureGoverned(cfg, tmp_path / "coord", names, current, 0, said.append), keys, said


def _reply(strategy, keys, site: str, agg, n: int = 8, status: str = "ok", sign_with: str | None = None):
    """A reply as SecAggPlusWorkflow hands it to the strategy: the summed mean as parameters, the site's report."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    from hearthkit.federate.site import RoundSpec, signed

    m = {"site": site, "status": status, "flagged": "[]", "manifest": f"{site}-hash" * 4, "request": 1, "items": 3,
         "restrictions": json.dumps([f"tk:{site}"]), "attribution": json.dumps([site]), "seconds": 1.0,
         "device": "cpu"}
    if not strategy.cfg.insecure:
        spec = RoundSpec("fed-asr", 1, "asr", MODEL, "abc '", 2, 4, 0.003, 0, 0.0, strategy.nonces[1])
        m = signed(keys[sign_with or site], spec, [], n, m)
    return None, FitRes(Status(Code.OK, ""), ndarrays_to_parameters(agg), n, m)


def test_secure_round_takes_the_sum_records_each_site_and_signatures_cover_the_report(tmp_path: Path):
    strategy, keys, said = _strategy(tmp_path, insecure=False)
    strategy.challenge(1)
    agg = [np.linspace(-1, 1, 6).astype(np.float32)]
    params, _ = strategy.aggregate_fit(1, [_reply(strategy, keys, s, agg) for s in SITES], [])
    assert params is not None and np.allclose(strategy.current[0], agg[0])
    lin = json.loads((tmp_path / "coord" / "lineage.json").read_text())
    assert sorted(c["site"] for c in lin["contributions"]) == sorted(SITES)
    assert all(c["secure_aggregation"] and c["signed"] for c in lin["contributions"])
    assert lin["rounds"][-1]["secure_aggregation"]["num_shares"] == 3

    # Again: east's report signed with north's key; its weights are inside the sum, so the round is refused.
    before = [a.copy() for a in strategy.current]
    replies = [_reply(strategy, keys, s, [agg[0] * 2], sign_with="north" if s == "east" else None) for s in SITES]
    params, _ = strategy.aggregate_fit(1, replies, [])
    assert params is None and np.array_equal(strategy.current[0], before[0])
    lin = json.loads((tmp_path / "coord" / "lineage.json").read_text())
    assert any(e["site"] == "east" and e["event"] == "refused" for e in lin["events"]), lin["events"]
    assert lin["rounds"][-1]["accepted"] == []
    assert any("no secure aggregate accepted" in s for s in said)


def test_secure_round_lapsed_site_adds_nothing_unknown_site_refuses_round(tmp_path: Path):
    strategy, keys, _ = _strategy(tmp_path, insecure=True)
    agg = [np.full(6, 0.25, np.float32)]
    replies = [_reply(strategy, keys, "north", agg), _reply(strategy, keys, "south", agg),
               _reply(strategy, keys, "east", agg, n=0, status="lapsed")]
    dropped = Exception("Error(code=0, reason='ClientApp exited')")  # Flower lists one dropout once per stage loop
    params, _ = strategy.aggregate_fit(1, replies, [dropped, dropped])
    assert params is not None and np.allclose(strategy.current[0], 0.25)
    lin = json.loads((tmp_path / "coord" / "lineage.json").read_text())
    assert sorted(lin["rounds"][-1]["accepted"]) == ["north", "south"]
    assert any(e["site"] == "east" and e["event"] == "lapsed" for e in lin["events"])
    assert [e["round"] for e in lin["events"] if e["event"] == "no_answer"] == [1]

    replies = [_reply(strategy, keys, s, [np.ones(6, np.float32)]) for s in ("north", "south", "west")]
    params, _ = strategy.aggregate_fit(2, replies, [])
    assert params is None and np.allclose(strategy.current[0], 0.25)  # unchanged
    lin = json.loads((tmp_path / "coord" / "lineage.json").read_text())
    assert any(e["site"] == "west" and e["event"] == "refused" for e in lin["events"])
    # A sum of the wrong shape (a site sent other tensors) is refused as a whole, too.
    params, _ = strategy.aggregate_fit(3, [_reply(strategy, keys, s, [np.ones(5, np.float32)]) for s in SITES], [])
    assert params is None and np.allclose(strategy.current[0], 0.25)
