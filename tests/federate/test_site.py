"""A site's approval is bound to its manifest hash: a withdrawal lapses it (the site sends no weights, only the
reason) until its stewards approve the new manifest; nothing is read while it is lapsed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearthkit.errors import HearthError
from tests.federate.sites import MODEL, UNITS, approve, make_site


def test_withdrawal_lapses_the_site_until_its_stewards_approve_again(tiny_speech_archive: Path, tmp_path: Path):
    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.federate.config import SiteConfig
    from hearthkit.federate.site import Lapsed, RoundSpec, approved_request, local_round
    from hearthkit.lineage.withdraw import withdraw
    from hearthkit.store.vault import workspace_store
    from hearthkit.workspace import open_workspace

    ws = open_workspace(make_site(tmp_path, tiny_speech_archive, "north"))
    catalog = open_workspace_catalog(ws)
    site = SiteConfig(site="north", coordinator="127.0.0.1:1", purpose="language_revitalization",
                      requester="fed-team", collections=["korero-north"], ca="ca.pem")  # no link here
    spec = RoundSpec("fed-unit", 1, "asr", MODEL, UNITS, 1, 2, 0.01, 0)
    rid, before = approved_request(catalog, site, spec)
    assert rid == 1 and before.included and "tk:secret_sacred" in before.restrictions  # approval lifted the hold

    withdraw(catalog, workspace_store(ws), "korero-north", "item", before.included[0]["external_id"],
             by="steward-north", reason="family asked")
    with pytest.raises(Lapsed, match="no approval holds for today's manifest .*changed since approval.*"
                                     "hearth request .*-c korero-north"):
        approved_request(catalog, site, spec)
    out, n, metrics = local_round(ws, catalog, site, spec, ["w"], ["unchanged"])
    assert (out, n, metrics["status"]) == (["unchanged"], 0, "lapsed") and "changed since approval" in metrics["reason"]
    assert not (ws.root / "runs").exists() or not any((ws.root / "runs").iterdir())  # nothing planned, nothing read

    assert approve(catalog, "north") == 2
    rid, after = approved_request(catalog, site, spec)
    assert rid == 2 and after.hash != before.hash and len(after.included) == len(before.included) - 1

    other = site.model_copy(update={"collections": ["korero-elsewhere"]})
    with pytest.raises(HearthError, match="collection 'korero-elsewhere' is not in the catalog"):
        approved_request(catalog, other, spec)
    catalog.close()


def test_fedprox_pulls_a_sites_local_steps_towards_the_global_model(tiny_speech_archive: Path, tmp_path: Path):
    """The same round (data, seed, global weights) trained through the engine with μ = 0 and μ > 0: the proximal
    term keeps the local model nearer the global one, and the site reports the μ it applied."""
    import numpy as np

    from hearthkit.catalog.context import open_workspace_catalog
    from hearthkit.federate.config import FederationConfig, SiteConfig
    from hearthkit.federate.coordinator import initial_weights
    from hearthkit.federate.site import RoundSpec, local_round
    from hearthkit.workspace import open_workspace
    from tests.federate.sites import SITES

    ws = open_workspace(make_site(tmp_path, tiny_speech_archive, "north"))
    catalog = open_workspace_catalog(ws)
    site = SiteConfig(site="north", coordinator="127.0.0.1:1", purpose="language_revitalization",
                      requester="fed-team", collections=["korero-north"], ca="ca.pem")  # no link here
    cfg = FederationConfig.model_validate({"name": "fed-prox", "model": MODEL, "units": UNITS, "insecure": True,
                                           "sites": [{"name": s, "community": c} for s, (c, _, _) in SITES.items()]})
    names, start = initial_weights(cfg)
    moved, reported = {}, {}
    for mu in (0.0, 50.0):
        spec = RoundSpec(f"fed-mu{mu:g}", 1, "asr", MODEL, UNITS, 4, 4, 0.01, 0, proximal_mu=mu)
        out, n, metrics = local_round(ws, catalog, site, spec, names, start)
        assert metrics["status"] == "ok" and n == 16, metrics
        moved[mu] = float(np.sqrt(sum(((o - a) ** 2).sum() for o, a in zip(out, start, strict=True))))
        reported[mu] = metrics["proximal_mu"]
        run = json.loads((next((ws.root / "runs").glob(f"fed-mu{mu:g}-north-*")) / "run.json").read_text())
        assert run["config"]["train"]["proximal_mu"] == mu  # the engine's run config carries it
    catalog.close()
    assert 0 < moved[50.0] < 0.8 * moved[0.0], moved
    assert reported == {0.0: 0.0, 50.0: 50.0}
