"""The coordinator's strategy in process, with Flower's own message types: malformed updates are refused with a
clear message and leave the global model unchanged; DP wraps Flower's strategy and its (ε, δ) reaches the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hearthkit.federate.config import FederationConfig
from tests.federate.sites import MODEL, SITES, UNITS

flwr_common = pytest.importorskip("flwr.common")


def _cfg(**extra) -> FederationConfig:
    return FederationConfig.model_validate({
        "name": "fed-unit", "model": MODEL, "units": UNITS, "rounds": 2, "local_steps": 1,
        "sites": [{"name": s, "community": c} for s, (c, _, _) in SITES.items()], **extra})


def _strategy(tmp_path: Path, cfg: FederationConfig):
    from hearthkit.federate.coordinator import Governed, checkpoint_path, initial_weights
    from hearthkit.federate.weights import save

    names, current = initial_weights(cfg)
    save(checkpoint_path(tmp_path, 0), names, current)
    return Governed(cfg, tmp_path, names, current, 0, lambda msg: None), names, current


def _res(arrays, site: str, **metrics):
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    params = arrays if isinstance(arrays, flwr_common.Parameters) else ndarrays_to_parameters(arrays)
    return None, FitRes(Status(Code.OK, ""), params, 8, {"site": site, "status": "ok", "manifest": "ab" * 32,
                                                          "request": 1, "restrictions": "[]", "attribution": "[]",
                                                          "flagged": "[]", **metrics})


def test_malformed_updates_are_refused_and_change_nothing(tmp_path: Path):
    from flwr.common import Parameters, parameters_to_ndarrays

    cfg = _cfg()
    strategy, names, current = _strategy(tmp_path, cfg)
    good = [a + 1.0 for a in current]
    nan = [a.copy() for a in current]
    nan[0].flat[0] = np.nan
    results = [_res([a[..., :-1] if a.ndim else a for a in current], "south"),  # wrong shapes
               _res(current[:-1], "east"),  # a tensor short
               _res(Parameters(tensors=[b"not an array"], tensor_type="numpy.ndarray"), "east"),
               _res(nan, "south"),
               _res(good, "west"),  # not a site of this federation
               _res(good, "north")]
    params, _ = strategy.aggregate_fit(1, results, [])
    out = parameters_to_ndarrays(params)
    for o, g in zip(out, good, strict=True):
        np.testing.assert_array_equal(o, g)  # FedAvg of the one acceptable update
    reasons = [e["reason"] for e in strategy.lineage.events if e["event"] == "refused"]
    assert len(reasons) == 5
    assert "shape" in reasons[0] and "expected" in reasons[0]
    assert f"{len(current) - 1} tensors, expected {len(current)}" in reasons[1]
    assert "not readable as arrays" in reasons[2]
    assert "NaN" in reasons[3]
    assert "not a site of federation fed-unit" in reasons[4]
    assert [c["site"] for c in strategy.lineage.contributions] == ["north"]

    # A round where every update is refused: no new global model, the checkpoint repeats the last one.
    params, _ = strategy.aggregate_fit(2, [_res(nan, "north")], [])
    assert params is None
    lineage = json.loads((tmp_path / "lineage.json").read_text())
    assert lineage["rounds"][-1] == {"round": 2, "accepted": [], "global": lineage["rounds"][0]["global"]}


def test_lapsed_site_is_recorded_and_withdrawn_rounds_flag_the_model(tmp_path: Path):
    strategy, _, current = _strategy(tmp_path, _cfg())
    strategy.aggregate_fit(1, [_res(current, "north"), _res(current, "south")], [])
    lapsed = _res(current, "north", status="lapsed", reason="no approval holds for today's manifest",
                  flagged=json.dumps([{"round": 1, "reason": "item hemi_0001 withdrawn"}]))
    strategy.aggregate_fit(2, [lapsed, _res(current, "south")], [])
    lin = strategy.lineage
    assert any(e["event"] == "lapsed" and e["site"] == "north" and "no approval" in e["reason"] for e in lin.events)
    north = [c for c in lin.contributions if c["site"] == "north"]
    assert len(north) == 1 and north[0]["flagged"] == "item hemi_0001 withdrawn"
    assert lin.status == "needs-retrain"


def test_differential_privacy_wraps_flower_and_reaches_the_card(tmp_path: Path):
    from flwr.common import parameters_to_ndarrays

    from hearthkit.federate.coordinator import publish
    from hearthkit.federate.privacy import epsilon

    cfg = _cfg(privacy={"clip": 0.5, "noise_multiplier": 1.0, "delta": 1e-5})
    strategy, _, current = _strategy(tmp_path, cfg)
    assert "DifferentialPrivacyServerSideFixedClipping" in type(strategy.inner).__name__
    far = [a + 10.0 for a in current]
    params, _ = strategy.aggregate_fit(1, [_res(far, s) for s in SITES], [])
    out = parameters_to_ndarrays(params)
    step = np.sqrt(sum(float(((o - c) ** 2).sum()) for o, c in zip(out, current, strict=True)))
    n = sum(a.size for a in current)
    noise_std = 1.0 * 0.5 / len(SITES)  # Flower's server-side noise: multiplier x clip / sampled sites
    # Unclipped, the step would be 10·sqrt(n); clipped to 0.5, what remains is the noise (norm ≈ std·sqrt(n)).
    assert 0.8 * noise_std * np.sqrt(n) < step < 0.5 + 1.2 * noise_std * np.sqrt(n) < 10 * np.sqrt(n) / 10
    publish(cfg, tmp_path, strategy.lineage, lambda msg: None)
    card = (tmp_path / "model" / "model_card.md").read_text(encoding="utf-8")
    eps = epsilon(1.0, 1, 1e-5)
    assert 0 < eps < epsilon(0.5, 1, 1e-5) and f"(ε, δ) = ({eps:.3g}, 1e-05)" in card


def test_config_errors_are_one_line(tmp_path: Path):
    from hearthkit.cli.main import app

    bad = tmp_path / "fed.yaml"
    bad.write_text("name: x\nunits: ab\nsites: [{name: a, community: A}]\nmin_sites: 3\n")
    res = CliRunner().invoke(app, ["federate", "coordinator", str(bad)])
    assert res.exit_code == 2 and "min_sites 3 exceeds the 1 sites listed" in res.output
    assert "Traceback" not in res.output
    bad.write_text("name: x\nunits: ab\nsites: [{name: a, community: A}]\nmodel: {d_modle: 4}\n")
    res = CliRunner().invoke(app, ["federate", "coordinator", str(bad)])
    assert res.exit_code == 2 and "d_modle" in res.output and str(bad) in res.output.replace("\n", "")


def test_fedadam_is_flowers_strategy(tmp_path: Path):
    from flwr.common import parameters_to_ndarrays

    cfg = _cfg(strategy={"kind": "fedadam", "eta": 0.01, "tau": 1e-3})
    strategy, _, current = _strategy(tmp_path, cfg)
    assert type(strategy.inner).__name__ == "FedAdam"
    params, _ = strategy.aggregate_fit(1, [_res([a + 1.0 for a in current], "north")], [])
    # Adam's first server step moves each weight by about eta (Flower's bias-corrected step: 0.74 eta here) in the
    # direction of the averaged update, whatever the update's size: not FedAvg's full step of 1.0.
    for o, c in zip(parameters_to_ndarrays(params), current, strict=True):
        assert ((o - c > 0.005) & (o - c < 0.015)).all()


def test_unreachable_coordinator_and_busy_port_are_one_line(tmp_path: Path, workspace: Path):
    import socket

    import yaml

    from hearthkit.cli.main import app

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = tmp_path / "fed.yaml"
        cfg.write_text(yaml.safe_dump({**_cfg().model_dump(), "address": f"127.0.0.1:{port}"}, allow_unicode=True),
                       encoding="utf-8")
        res = CliRunner().invoke(app, ["federate", "coordinator", str(cfg), "--folder", str(tmp_path / "coord")])
        assert res.exit_code == 2 and "the coordinator cannot listen there" in res.output, res.output
        site = tmp_path / "site.yaml"
        site.write_text(yaml.safe_dump({"site": "north", "coordinator": f"127.0.0.1:{port + 0}",
                                        "purpose": "research", "requester": "r", "collections": ["c"]}))
    # Now nothing listens on PORT: the site gives up after --wait seconds with one line.
    res = CliRunner().invoke(app, ["federate", "join", str(site), "--wait", "1", "-w", str(workspace)])
    assert res.exit_code == 2 and f"cannot reach the coordinator at 127.0.0.1:{port}" in res.output, res.output
    assert "Traceback" not in res.output
