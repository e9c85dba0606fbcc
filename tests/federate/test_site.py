"""A site's approval is bound to its manifest hash: a withdrawal lapses it (the site sends no weights, only the
reason) until its stewards approve the new manifest; nothing is read while it is lapsed."""

from __future__ import annotations

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
                      requester="fed-team", collections=["korero-north"])
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
