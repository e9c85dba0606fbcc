"""Issue 19 class 3: a training run's data use is judged today, at start and at every resume; a past as_of only
reproduces an old manifest read-only.

Time cannot pass inside a test, so where a scenario needs "the request was made a month ago" the clock of
launch/plan.py and governance/requests.py is set back (a fake: the one thing faked here) and the request row's
created_at is written as that day. Every date is relative to the real today, so the tests hold on any day.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from builder import Builder
from sqlalchemy import update
from typer.testing import CliRunner

from hearthkit.catalog.db import Catalog
from hearthkit.catalog.models import AccessRequest, Collection, Consent, Item
from hearthkit.cli.main import app
from hearthkit.engine.config import RunConfig, load_config
from hearthkit.errors import HearthError
from hearthkit.governance import requests as rq
from hearthkit.governance.policy import compute_manifest
from hearthkit.launch import plan as plan_mod
from hearthkit.launch.plan import governed_manifest, make_request, plan_run
from tests.catalog.conftest import db_url  # noqa: F401  (the SQLite + PostgreSQL fixture)
from tests.conftest import ROOT

TODAY = date.today()
D0 = TODAY - timedelta(days=30)  # "a month ago": when the request was made / the run was planned
READ_ONLY = "as_of is for reproducing an old manifest read-only (`hearth plan`); training is judged today"


def _iso(d: date) -> str:
    return d.isoformat()


def _mmdd(d: date) -> str:
    return d.strftime("%m-%d")


@pytest.fixture
def clock(monkeypatch):
    """set_today(D): the day launch/plan.py and governance/requests.py believe it is (None: the real day)."""

    def set_today(day: date | None) -> None:
        class Fake(date):
            @classmethod
            def today(cls) -> date:
                return day

        for mod in (plan_mod, rq):
            if day is None:
                monkeypatch.setattr(mod, "date", date)
            else:
                monkeypatch.setattr(mod, "date", Fake)

    return set_today


@pytest.fixture
def pb(db_url: str) -> Builder:  # noqa: F811
    cat = Catalog.open(db_url, create=True)
    yield Builder(cat)
    cat.close()


def _facts(b: Builder) -> None:
    """Three items usable a month ago and not today: consent expired since, a season closed since; and a plain
    one usable on both days."""
    c = b.collection()
    b.consent(c, "individual", "mere", ["research"], given=_iso(D0 - timedelta(days=60)),
              expires=_iso(TODAY - timedelta(days=10)))
    b.consent(c, "individual", "kui", ["research"], given=_iso(D0 - timedelta(days=60)))
    b.item(c, "expired", speaker="mere")
    b.label("tk:seasonal", item=b.item(c, "seasonal", speaker="kui"),
            season_from=_mmdd(D0 - timedelta(days=10)), season_to=_mmdd(TODAY - timedelta(days=5)))
    b.item(c, "plain", speaker="kui")


def _cfg(rid: int | None = None, **request) -> RunConfig:
    req = {"purpose": "research", "requester": "rangi", "collections": ["korero"], "id": rid, **request}
    return RunConfig(name="r1", recipe="asr", request=req)


def _included(man) -> list[str]:
    return [e["external_id"] for e in man.included]


def test_a_past_as_of_is_read_only(pb: Builder):
    _facts(pb)
    old = compute_manifest(pb.catalog, make_request(_cfg(as_of=_iso(D0))))  # `hearth plan` may reproduce it
    assert _included(old) == ["expired", "plain", "seasonal"]
    with pytest.raises(HearthError) as err:
        governed_manifest(pb.catalog, _cfg(as_of=_iso(D0)))
    assert str(err.value) == f"training refused: request.as_of {_iso(D0)}: {READ_ONLY}"
    now = governed_manifest(pb.catalog, _cfg())
    assert _included(now) == ["plain"] and now.request.as_of == _iso(TODAY)
    assert {e["external_id"]: e["rule"] for e in now.excluded} == {"expired": "individual_consent",
                                                                   "seasonal": "tk:seasonal"}
    assert _included(governed_manifest(pb.catalog, _cfg(as_of=_iso(TODAY)))) == ["plain"]


def _request_made_on(b: Builder, clock, day: date, approve: bool) -> int:
    """A request made (and, with APPROVE, approved) on DAY, as if the clock then said DAY."""
    b.person("aroha", "A", "steward")
    clock(day)
    req, _ = rq.create_request(b.catalog, "research", "rangi", ["korero"], "asr", _iso(day))
    with b.catalog.session() as s:
        s.execute(update(AccessRequest).where(AccessRequest.id == req.id)
                  .values(created_at=datetime(day.year, day.month, day.day, 12, tzinfo=UTC)))
    if approve:
        assert rq.decide(b.catalog, req.id, "aroha", "approve").status == "approved"
    clock(None)
    return req.id


def test_an_approved_request_is_judged_again_today(pb: Builder, clock):
    _facts(pb)
    pb.label("tk:culturally_sensitive", item=pb.item(1, "sensitive", speaker="kui"))  # so approval is needed
    rid = _request_made_on(pb, clock, D0, approve=True)
    with pytest.raises(HearthError, match=rf"training refused: the manifest of request {rid} changed since "
                                          rf"approval \(judged today, {_iso(TODAY)}"):
        governed_manifest(pb.catalog, _cfg(rid))
    # What the stewards saw a month ago is still exactly reproducible, read-only.
    stored = rq.get_request(pb.catalog, rid)
    assert compute_manifest(pb.catalog, stored.policy_request()).hash == stored.manifest_hash


def test_a_month_old_request_is_not_approved_once_its_data_changed(pb: Builder, clock):
    _facts(pb)
    pb.label("tk:culturally_sensitive", item=pb.item(1, "sensitive", speaker="kui"))
    rid = _request_made_on(pb, clock, D0, approve=False)
    with pytest.raises(HearthError, match=rf"request {rid}: judged today \({_iso(TODAY)}\) it permits other data"):
        rq.decide(pb.catalog, rid, "aroha", "approve")
    assert rq.get_request(pb.catalog, rid).status == "pending"


def test_a_month_old_request_whose_data_did_not_change_still_trains(pb: Builder, clock):
    c = pb.collection()
    pb.consent(c, "individual", "kui", ["research"], given=_iso(D0 - timedelta(days=60)))
    pb.label("tk:culturally_sensitive", item=pb.item(c, "sensitive", speaker="kui"))
    pb.item(c, "plain", speaker="kui")
    rid = _request_made_on(pb, clock, D0, approve=True)
    man = governed_manifest(pb.catalog, _cfg(rid))
    assert _included(man) == ["plain", "sensitive"] and man.request.as_of == _iso(TODAY)


def test_a_backdated_request_is_never_approved_or_trained(pb: Builder):
    _facts(pb)
    pb.person("aroha", "A", "steward")
    req, man = rq.create_request(pb.catalog, "research", "rangi", ["korero"], "asr", _iso(D0))
    assert req.backdated and req.status == "not_required" and _included(man) == ["expired", "plain", "seasonal"]
    with pytest.raises(HearthError, match=rf"training refused: request {req.id} evaluates policy as of "
                                          rf"{_iso(D0)}, before the day it was made"):
        governed_manifest(pb.catalog, _cfg(req.id))
    pb.label("tk:culturally_sensitive", item=pb.item(1, "sensitive", speaker="kui"))
    req, _ = rq.create_request(pb.catalog, "research", "rangi", ["korero"], "asr", _iso(D0))
    assert req.status == "pending"
    with pytest.raises(HearthError, match=r"approval refused: .*read-only \(`hearth plan`\)"):
        rq.decide(pb.catalog, req.id, "aroha", "approve")
    assert rq.decide(pb.catalog, req.id, "aroha", "deny", note="back-dated").status == "denied"


# --- start and resume of a real run on the tiny speech archive, through plan_run and the CLI ---

@pytest.fixture
def imported(workspace: Path, speech_archive: Path) -> Path:
    res = CliRunner().invoke(app, ["data", "import", str(speech_archive)], env={"HEARTH_WORKSPACE": str(workspace)})
    assert res.exit_code == 0, res.output
    return workspace


def _hearth(ws: Path, *args: str, code: int = 0) -> str:
    res = CliRunner().invoke(app, list(args), env={"HEARTH_WORKSPACE": str(ws), "COLUMNS": "200"})
    assert res.exit_code == code, res.output
    if code == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
        return lines[0]
    return " ".join(res.output.split())


def _open(ws: Path):
    from hearthkit.workspace import open_workspace

    w = open_workspace(ws)
    return w, Catalog.open(w.db_url)


@pytest.mark.parametrize("change", ["consent", "season", "embargo"])
def test_resume_is_judged_today(imported: Path, clock, change: str):
    ws, catalog = _open(imported)
    try:
        cfg = load_config(ROOT / "configs" / "demo-asr.yaml", [f"name=resume-{change}"])
        with catalog.session() as s:
            coll = s.query(Collection).one()
            first = s.query(Item).filter(Item.speaker == "hemi", ~Item.labels.any()).order_by(Item.external_id).first()
            coll_id, item_id = coll.id, first.id
            if change == "consent":  # hemi's consent, as recorded, ran until ten days ago
                s.execute(update(Consent).where(Consent.subject == "hemi")
                          .values(expires_at=datetime.combine(TODAY - timedelta(days=10), datetime.min.time(),
                                                              tzinfo=UTC)))
        b = Builder(catalog)
        if change == "season":
            b.label("tk:seasonal", item=item_id, community=coll.community,
                    season_from=_mmdd(D0 - timedelta(days=3)), season_to=_mmdd(D0 + timedelta(days=3)))
        clock(D0)
        run_dir, planned, resumed = plan_run(ws, catalog, cfg)
        assert not resumed and item_id in {e["item_id"] for e in planned.included}
        assert planned.request.as_of == _iso(D0)
        if change == "embargo":  # a steward embargoes the item after the run was planned
            with catalog.session() as s:
                s.get(Item, item_id).embargo_until = TODAY + timedelta(days=365)
        clock(D0 + timedelta(days=1))  # the next day nothing had changed for consent and season: it resumes
        if change != "embargo":
            assert plan_run(ws, catalog, cfg)[2] is True
        clock(None)
        with pytest.raises(HearthError, match=rf"run 'resume-{change}': the catalog changed since it was planned "
                                              rf"\(judged today, {_iso(TODAY)}"):
            plan_run(ws, catalog, cfg)
        assert coll_id
    finally:
        catalog.close()


def test_cli_plan_as_of_is_read_only_and_train_refuses_it(imported: Path):
    past = _iso(D0)
    config = str(ROOT / "configs" / "demo-asr.yaml")
    out = _hearth(imported, "plan", config, "--as-of", past)
    assert f"as of {past}" in out and f"read-only: as of {past} reproduces an old manifest; training is judged " \
                                      "today" in out
    assert "read-only" not in _hearth(imported, "plan", config)
    line = _hearth(imported, "train", config, "--set", f"request.as_of={past}", code=2)
    assert line == f"error: training refused: request.as_of {past}: {READ_ONLY}"
    assert not (imported / "runs" / "demo-asr" / "run.json").exists()
    _hearth(imported, "people", "add", "aroha", "--community", "Te Hapori Tauira (demo community)", "--role",
            "steward", "--as-owner")
    out = _hearth(imported, "request", "--purpose", "language_revitalization", "--requester", "demo-technologist",
                  "-c", "demo-korero", "--recipe", "asr", "--as-of", past)
    rid = re.search(r"request (\d+):", out).group(1)
    assert "read-only" in out and "cannot be approved for training" in out
    assert "approval refused" in _hearth(imported, "approve", rid, "--by", "aroha", code=2)
