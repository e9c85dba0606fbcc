"""The coordinator's strategy in process, with Flower's own message types: malformed updates are refused with a
clear message and leave the global model unchanged; DP wraps Flower's strategy and its (ε, δ) reaches the card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from hearthkit.federate.config import FederationConfig
from hearthkit.federate.signing import public_key_text
from tests.federate.sites import MODEL, SITES, UNITS

flwr_common = pytest.importorskip("flwr.common")
KEYS = {s: Ed25519PrivateKey.generate() for s in [*SITES, "west"]}  # each site's own signing key


def _cfg(**extra) -> FederationConfig:
    return FederationConfig.model_validate({
        "name": "fed-unit", "model": MODEL, "units": UNITS, "rounds": 2, "local_steps": 1,
        "sites": [{"name": s, "community": c, "public_key": public_key_text(KEYS[s])}
                  for s, (c, _, _) in SITES.items()], **extra})


def _strategy(tmp_path: Path, cfg: FederationConfig):
    from hearthkit.federate.coordinator import Governed, checkpoint_path, initial_weights
    from hearthkit.federate.weights import save

    names, current = initial_weights(cfg)
    save(checkpoint_path(tmp_path, 0), names, current)
    return Governed(cfg, tmp_path, names, current, 0, lambda msg: None), names, current


def _res(arrays, site: str, strategy=None, round_: int = 1, key: str | None = None, **metrics):
    """A site's reply as Flower carries it, signed by the site's key (or KEY's) over round_'s challenge, as
    site.signed signs it; unsigned without a strategy (an insecure federation)."""
    from flwr.common import Code, FitRes, Status, ndarrays_to_parameters

    from hearthkit.federate.signing import SIGNATURE, sign

    params = arrays if isinstance(arrays, flwr_common.Parameters) else ndarrays_to_parameters(arrays)
    m = {"site": site, "status": "ok", "manifest": "ab" * 32, "request": 1, "restrictions": "[]",
         "attribution": "[]", "flagged": "[]", **metrics}
    if strategy is not None:
        nonce = strategy.nonces.get(round_) or strategy.challenge(round_)
        m = {**m, "nonce": nonce}
        m[SIGNATURE] = sign(KEYS[key or site], "fed-unit", round_, nonce, params.tensors, 8, m)
    return None, FitRes(Status(Code.OK, ""), params, 8, m)


def test_malformed_updates_are_refused_and_change_nothing(tmp_path: Path):
    from flwr.common import Parameters, parameters_to_ndarrays

    cfg = _cfg()
    strategy, names, current = _strategy(tmp_path, cfg)
    good = [a + 1.0 for a in current]
    nan = [a.copy() for a in current]
    nan[0].flat[0] = np.nan
    results = [_res([a[..., :-1] if a.ndim else a for a in current], "south", strategy),  # wrong shapes
               _res(current[:-1], "east", strategy),  # a tensor short
               _res(Parameters(tensors=[b"not an array"], tensor_type="numpy.ndarray"), "east", strategy),
               _res(nan, "south", strategy),
               _res(good, "west", strategy),  # not a site of this federation
               _res(good, "north", strategy)]
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
    params, _ = strategy.aggregate_fit(2, [_res(nan, "north", strategy, 2)], [])
    assert params is None
    lineage = json.loads((tmp_path / "lineage.json").read_text())
    assert lineage["rounds"][-1] == {"round": 2, "accepted": [], "global": lineage["rounds"][0]["global"],
                                     "strategy": "fedavg"}


def test_lapsed_site_is_recorded_and_withdrawn_rounds_flag_the_model(tmp_path: Path):
    strategy, _, current = _strategy(tmp_path, _cfg())
    strategy.aggregate_fit(1, [_res(current, "north", strategy), _res(current, "south", strategy)], [])
    lapsed = _res(current, "north", strategy, 2, status="lapsed", reason="no approval holds for today's manifest",
                  flagged=json.dumps([{"round": 1, "reason": "item hemi_0001 withdrawn"}]))
    strategy.aggregate_fit(2, [lapsed, _res(current, "south", strategy, 2)], [])
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
    params, _ = strategy.aggregate_fit(1, [_res(far, s, strategy) for s in SITES], [])
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
    bad.write_text("name: x\nunits: ab\nsites: [{name: a, community: A}]\n")
    res = CliRunner().invoke(app, ["federate", "coordinator", str(bad)])
    assert res.exit_code == 2 and "site a: public_key missing" in res.output and "Traceback" not in res.output
    bad.write_text("name: x\nunits: ab\nsites: [{name: a, community: A, public_key: 'ed25519:AAAA'}]\n")
    res = CliRunner().invoke(app, ["federate", "coordinator", str(bad)])
    assert res.exit_code == 2 and "site a: public_key: not an Ed25519 public key" in res.output, res.output
    bad.write_text("name: x\nunits: ab\nsites: [{name: a, community: A}]\ninsecure: true\nmodel: {d_modle: 4}\n")
    res = CliRunner().invoke(app, ["federate", "coordinator", str(bad)])
    assert res.exit_code == 2 and "d_modle" in res.output and str(bad) in res.output.replace("\n", "")
    site = tmp_path / "site.yaml"
    site.write_text("site: a\ncoordinator: 127.0.0.1:1\npurpose: research\nrequester: r\ncollections: [c]\n")
    res = CliRunner().invoke(app, ["federate", "join", str(site)])
    assert res.exit_code == 2 and "ca missing: the coordinator's CA certificate" in res.output, res.output
    site.write_text(site.read_text() + "ca: nowhere/ca.pem\n")
    res = CliRunner().invoke(app, ["federate", "join", str(site)])
    assert res.exit_code == 2 and f"{tmp_path / 'nowhere' / 'ca.pem'} is not a file" in res.output.replace("\n", "")


def test_fedadam_is_flowers_strategy(tmp_path: Path):
    from flwr.common import parameters_to_ndarrays

    cfg = _cfg(strategy={"kind": "fedadam", "eta": 0.01, "tau": 1e-3})
    strategy, _, current = _strategy(tmp_path, cfg)
    assert type(strategy.inner).__name__ == "FedAdam"
    params, _ = strategy.aggregate_fit(1, [_res([a + 1.0 for a in current], "north", strategy)], [])
    # Adam's first server step moves each weight by about eta (Flower's bias-corrected step: 0.74 eta here) in the
    # direction of the averaged update, whatever the update's size: not FedAvg's full step of 1.0.
    for o, c in zip(parameters_to_ndarrays(params), current, strict=True):
        assert ((o - c > 0.005) & (o - c < 0.015)).all()


def test_unreachable_coordinator_and_busy_port_are_one_line(tmp_path: Path, workspace: Path):
    import socket

    import yaml

    from hearthkit.cli.main import app
    from hearthkit.federate.tls import make_tls

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
        ca = make_tls(tmp_path / "tls", ["127.0.0.1"])
        site.write_text(yaml.safe_dump({"site": "north", "coordinator": f"127.0.0.1:{port + 0}", "ca": str(ca),
                                        "purpose": "research", "requester": "r", "collections": ["c"]}))
    # Now nothing listens on PORT: the site gives up after --wait seconds with one line.
    res = CliRunner().invoke(app, ["federate", "join", str(site), "--wait", "1", "-w", str(workspace)])
    assert res.exit_code == 2 and f"cannot reach the coordinator at 127.0.0.1:{port}" in res.output, res.output
    assert "Traceback" not in res.output


def test_forged_unsigned_altered_and_replayed_updates_are_refused(tmp_path: Path):
    """Real Ed25519 signatures as site.signed makes them: only the listed key, over this round's challenge, over
    exactly these bytes, passes; every refusal leaves the global model unchanged."""
    from flwr.common import Parameters, parameters_to_ndarrays

    from hearthkit.federate.signing import SIGNATURE

    strategy, _, current = _strategy(tmp_path, _cfg())
    moved = [a + 1.0 for a in current]
    forged = _res(moved, "north", strategy, key="east")  # east signs an update in north's name with its own key
    unsigned = _res(moved, "south", strategy)
    del unsigned[1].metrics[SIGNATURE]
    altered = _res(moved, "east", strategy)
    tensors = list(altered[1].parameters.tensors)
    tensors[0] = tensors[0][:-4] + bytes(4)  # the last float of the first tensor zeroed on the way
    altered = (None, type(altered[1])(altered[1].status, Parameters(tensors, "numpy.ndarray"), 8, altered[1].metrics))
    params, _ = strategy.aggregate_fit(1, [forged, unsigned, altered], [])
    assert params is None and strategy.current is current
    reasons = {e["site"]: e["reason"] for e in strategy.lineage.events if e["event"] == "refused"}
    assert "signature does not verify with the site's public key" in reasons["north"]
    assert "not signed" in reasons["south"]
    assert "signature does not verify" in reasons["east"]
    assert strategy.lineage.contributions == []

    # Round 2: north's genuine reply to round 1 sent again (a replay) is refused; its genuine round-2 reply passes.
    replay = _res(moved, "north", strategy, 1)
    strategy.challenge(2)
    params, _ = strategy.aggregate_fit(2, [replay], [])
    assert params is None
    assert "another round's challenge (a replayed update)" in strategy.lineage.events[-1]["reason"]
    params, _ = strategy.aggregate_fit(2, [_res(moved, "north", strategy, 2)], [])
    for o, m in zip(parameters_to_ndarrays(params), moved, strict=True):
        np.testing.assert_array_equal(o, m)
    assert [(c["round"], c["site"], c["signed"]) for c in strategy.lineage.contributions] == [(2, "north", True)]


def test_insecure_federation_takes_unsigned_updates_and_says_so_on_the_card(tmp_path: Path):
    from hearthkit.federate.coordinator import publish

    cfg = _cfg(insecure=True)
    strategy, _, current = _strategy(tmp_path, cfg)
    params, _ = strategy.aggregate_fit(1, [_res(current, "north")], [])
    assert params is not None and strategy.lineage.contributions[0]["signed"] is False
    publish(cfg, tmp_path, strategy.lineage, lambda msg: None)
    card = (tmp_path / "model" / "model_card.md").read_text(encoding="utf-8")
    assert "**Insecure federation** (insecure: true)" in card and "weights travelled in clear" in card

    # At set-up: insecure gives Flower no certificates and says why in a warning; the default makes a CA.
    from hearthkit.federate.coordinator import certificates

    said: list[str] = []
    assert certificates(cfg, tmp_path, said.append) is None
    assert said and said[0].startswith("warning: insecure: true") and "in clear" in said[0]
    ca, cert, key = certificates(_cfg(), tmp_path, said.append)
    assert ca == (tmp_path / "tls" / "ca.pem").read_bytes() and cert.startswith(b"-----BEGIN CERTIFICATE")
    assert b"PRIVATE KEY" in key and "give each site" in said[-1]


def test_fedprox_config_strategy_and_records(tmp_path: Path):
    from hearthkit.federate.coordinator import publish
    from hearthkit.federate.site import RoundSpec

    for strategy_cfg, says in [({"kind": "fedprox"}, "fedprox needs proximal_mu"),
                               ({"kind": "fedavg", "proximal_mu": 0.1}, "proximal_mu is FedProx's"),
                               ({"kind": "fedprox", "proximal_mu": -1}, "greater than or equal to 0")]:
        with pytest.raises(ValueError, match=says):
            _cfg(strategy=strategy_cfg)
    cfg = _cfg(strategy={"kind": "fedprox", "proximal_mu": 0.25})
    strategy, _, current = _strategy(tmp_path, cfg)
    assert type(strategy.inner).__name__ == "FedProx" and strategy.inner.proximal_mu == 0.25
    spec = RoundSpec("fed-unit", 1, "asr", MODEL, UNITS, 1, 2, 0.01, 0, 0.25, strategy.challenge(1))
    assert RoundSpec.from_config(spec.to_config()) == spec  # what the site reads back from the fit config
    strategy.aggregate_fit(1, [_res(current, "north", strategy, proximal_mu=0.25)], [])
    assert strategy.lineage.rounds[0]["proximal_mu"] == 0.25 and strategy.lineage.rounds[0]["strategy"] == "fedprox"
    assert strategy.lineage.contributions[0]["proximal_mu"] == 0.25
    publish(cfg, tmp_path, strategy.lineage, lambda msg: None)
    assert "fedprox (proximal μ = 0.25)" in (tmp_path / "model" / "model_card.md").read_text(encoding="utf-8")


def test_fedadam_state_survives_a_coordinator_restart(tmp_path: Path):
    """Three FedAdam rounds uninterrupted, and the same three with the coordinator rebuilt from its checkpoint
    after round 2: the same global model. Without the saved moments (an old checkpoint) it would differ."""
    from flwr.common import parameters_to_ndarrays

    from hearthkit.federate.coordinator import Governed, checkpoint_path
    from hearthkit.federate.weights import load

    cfg = _cfg(strategy={"kind": "fedadam", "eta": 0.05}, rounds=3)

    def one_round(strategy, process_round: int, r: int):
        rng = np.random.default_rng(r)  # the same site updates in both runs
        updates = [[a + rng.normal(0, 0.1, a.shape).astype(np.float32) for a in strategy.current] for _ in SITES]
        replies = [_res(u, s, strategy, r) for u, s in zip(updates, SITES, strict=True)]
        params, _ = strategy.aggregate_fit(process_round, replies, [])
        return parameters_to_ndarrays(params)

    whole, _, _ = _strategy(tmp_path / "whole", cfg)
    for r in (1, 2, 3):
        uninterrupted = one_round(whole, r, r)
    first, _, _ = _strategy(tmp_path / "restarted", cfg)
    one_round(first, 1, 1)
    one_round(first, 2, 2)
    assert (tmp_path / "restarted" / "rounds" / "round_0002" / "strategy.safetensors").is_file()

    def restarted(folder: Path):
        names, current = load(checkpoint_path(folder, 2))
        return Governed(cfg, folder, names, current, 2, lambda msg: None)  # as coordinator.run builds it

    resumed = one_round(restarted(tmp_path / "restarted"), 1, 3)
    for a, b in zip(resumed, uninterrupted, strict=True):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "restarted" / "rounds" / "round_0002" / "strategy.safetensors").unlink()
    reset = one_round(restarted(tmp_path / "restarted"), 1, 3)
    assert any(not np.array_equal(a, b) for a, b in zip(reset, uninterrupted, strict=True))


def test_init_tls_and_site_key_commands(tmp_path: Path, workspace: Path):
    from cryptography import x509

    from hearthkit.cli.main import app
    from hearthkit.federate.signing import parse_public_key

    res = CliRunner().invoke(app, ["federate", "init-tls", str(tmp_path / "tls"), "--host", "coord.example.org"])
    assert res.exit_code == 0, res.output
    cert = x509.load_pem_x509_certificate((tmp_path / "tls" / "server.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["coord.example.org", "localhost"]
    assert oct((tmp_path / "tls" / "server.key").stat().st_mode & 0o777) == "0o600"
    res = CliRunner().invoke(app, ["federate", "init-tls", str(tmp_path / "tls")])  # never over a CA sites trust
    assert res.exit_code == 2 and "already holds a certificate" in res.output
    first = CliRunner().invoke(app, ["federate", "site-key", "-w", str(workspace)])
    again = CliRunner().invoke(app, ["federate", "site-key", "-w", str(workspace)])
    assert first.exit_code == 0 and first.output == again.output  # made once, then the same key
    parse_public_key(first.output.strip(), "printed key")
