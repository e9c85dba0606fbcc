"""Access-matrix rows of the requests, models, withdrawals, audit and use-a-model routes (merged into
tests/web/test_access_matrix.py). The workspace gets, on first use, a pending request by the researcher over a-open
(open-1 held for A's stewards), a model trained on a-comm, and a withdrawal record in a-comm."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from hearthkit.catalog.models import Collection, Consent, Label, Model, Run, RunItem, Withdrawal
from tests.web.conftest import NAMES, WebWS
from tests.web.matrix import LOGIN, Case, only, signed

_MADE: dict[str, dict] = {}
A_ROLES = ("member", "protocol", "researcher", "steward_a")  # a role in community A, where the model's data is from


def made(w: WebWS) -> dict:
    """Ids of the request, model and withdrawal this file adds to W (once per workspace copy)."""
    key = str(w.root)
    if key in _MADE:
        return _MADE[key]
    from hearthkit.governance.requests import create_request

    cat = w.catalog()
    with cat.session() as s:
        a_open = s.scalar(select(Collection.id).where(Collection.name == "a-open"))
        given = datetime(2026, 1, 1, tzinfo=UTC)
        s.add(Consent(collection_id=a_open, scope="collective", subject="A", given_by="council", given_at=given,
                      purposes=["research"]))
        s.add(Consent(collection_id=a_open, scope="individual", subject="spk-open-1", given_by="spk-open-1",
                      given_at=given, purposes=["research"]))
        # Held for A's stewards: the request is pending (open-1 is visible to every role, so nothing leaks).
        s.add(Label(item_id=w.items["open-1"], key="tk:culturally_sensitive", community="A", data={}))
        run = Run(name="m2-run", recipe="asr", purpose="research", requester=NAMES["researcher"],
                  manifest_hash="0" * 64, config={})
        s.add(run)
        s.flush()
        s.add(RunItem(run_id=run.id, item_id=w.items["comm-1"]))
        s.add(Model(name="m2", run_id=run.id, path=str(w.root / "models" / "m2"), recipe="asr", restrictions=[],
                    manifest_hash="0" * 64))
        comm = s.scalar(select(Collection.id).where(Collection.name == "a-comm"))
        wd = Withdrawal(collection_id=comm, scope="item", subject="comm-1", by=NAMES["steward_a"], reason="asked",
                        items=1)
        s.add(wd)
        s.flush()
        wid = wd.id
    req, _ = create_request(cat, "research", NAMES["researcher"], ["a-open"], "asr",
                            datetime.now(UTC).date().isoformat())
    assert req.status == "pending", req
    cat.close()
    _MADE[key] = {"request": req.id, "manifest": req.manifest_hash, "withdrawal": wid}
    return _MADE[key]


def stewards(status: int, other: int = 403):
    return only({"anonymous": LOGIN, "steward_a": status, "steward_b": status}, other)


def a_only(status: int, other: int = 404):
    return lambda role: LOGIN if role == "anonymous" else (status if role in A_ROLES else other)


def _request_cases(path: str) -> list[Case]:
    return [Case(lambda w: path.format(id=made(w)["request"]),
                 only({"anonymous": LOGIN, "researcher": 200, "steward_a": 200}, 404)),
            Case(lambda w: path.format(id=999999), signed(404))]


def _decision(path: str, success: int) -> list[Case]:
    def form(w: WebWS) -> dict:
        return {"decision": "approve", "manifest_hash": made(w)["manifest"]}

    expect = only({"anonymous": LOGIN, "researcher": 403, "steward_a": success}, 404)
    if path.startswith("/api/"):
        return [Case(lambda w: path.format(id=made(w)["request"]), expect, json=form)]
    return [Case(lambda w: path.format(id=made(w)["request"]), expect, form=form)]


def _new_request(w: WebWS) -> dict:
    made(w)
    return {"recipe": "asr", "purpose": "research", "collections": ["a-open"]}


def _revoke(w: WebWS) -> dict:
    made(w)
    return {"reason": "the council said it must not be used"}


def _withdraw(w: WebWS) -> dict:
    made(w)
    return {"collection": "a-comm", "scope": "item", "subject": "comm-1", "reason": "asked"}


def _translate(w: WebWS) -> dict:
    made(w)
    return {"model": "m2", "to": "mi", "text": "kia ora"}


_JOB = "no-such-job-id"

MATRIX: dict[tuple[str, str], list[Case]] = {
    # Requests: a researcher's own, and the stewards of the communities it concerns.
    ("GET", "/requests"): [Case(lambda w: "/requests", signed(200))],
    ("GET", "/api/v1/requests"): [Case(lambda w: "/api/v1/requests", signed(200))],
    ("GET", "/requests/new"): [Case(lambda w: "/requests/new", signed(200))],
    ("GET", "/requests/{request_id}"): _request_cases("/requests/{id}"),
    ("GET", "/api/v1/requests/{request_id}"): _request_cases("/api/v1/requests/{id}"),
    ("POST", "/requests"): [Case(lambda w: "/requests", signed(303), form=_new_request)],
    ("POST", "/api/v1/requests"): [Case(lambda w: "/api/v1/requests", signed(201), json=_new_request)],
    ("POST", "/requests/{request_id}/decision"): _decision("/requests/{id}/decision", 303),
    ("POST", "/api/v1/requests/{request_id}/decision"): _decision("/api/v1/requests/{id}/decision", 200),
    # Models: seen by those with a role in a community whose data the model learned from.
    ("GET", "/models"): [Case(lambda w: "/models", signed(200))],
    ("GET", "/api/v1/models"): [Case(lambda w: "/api/v1/models", signed(200))],
    ("GET", "/models/{name}"): [Case(lambda w: (made(w), "/models/m2")[1], a_only(200)),
                                Case(lambda w: "/models/none", signed(404))],
    ("GET", "/api/v1/models/{name}"): [Case(lambda w: (made(w), "/api/v1/models/m2")[1], a_only(200))],
    ("POST", "/models/{name}/retrain"): [Case(lambda w: (made(w), "/models/m2/retrain")[1],
                                              only({"anonymous": LOGIN, "steward_a": 400}, 404))],
    ("POST", "/api/v1/models/{name}/retrain"): [Case(lambda w: (made(w), "/api/v1/models/m2/retrain")[1],
                                                     only({"anonymous": LOGIN, "steward_a": 400}, 404))],
    # Revoking a model outright: a steward of a community whose data it learned from (m2 learned from a-comm, A).
    ("POST", "/models/{name}/revoke"): [Case(lambda w: (made(w), "/models/m2/revoke")[1],
                                             only({"anonymous": LOGIN, "steward_a": 303}, 404), form=_revoke)],
    ("POST", "/api/v1/models/{name}/revoke"): [Case(lambda w: (made(w), "/api/v1/models/m2/revoke")[1],
                                                    only({"anonymous": LOGIN, "steward_a": 200}, 404), json=_revoke)],
    # Withdrawals: the stewards of the collection's community.
    ("GET", "/withdrawals"): [Case(lambda w: "/withdrawals", signed(200))],
    ("GET", "/api/v1/withdrawals"): [Case(lambda w: "/api/v1/withdrawals", signed(200))],
    ("GET", "/withdrawals/{withdrawal_id}"): [Case(lambda w: f"/withdrawals/{made(w)['withdrawal']}",
                                                   only({"anonymous": LOGIN, "steward_a": 200}, 404))],
    ("GET", "/api/v1/withdrawals/{withdrawal_id}"): [Case(lambda w: f"/api/v1/withdrawals/{made(w)['withdrawal']}",
                                                          only({"anonymous": LOGIN, "steward_a": 200}, 404))],
    ("POST", "/withdrawals"): [Case(lambda w: "/withdrawals", only({"anonymous": LOGIN, "steward_a": 303}, 404),
                                    form=_withdraw)],
    ("POST", "/api/v1/withdrawals"): [Case(lambda w: "/api/v1/withdrawals",
                                           only({"anonymous": LOGIN, "steward_a": 201}, 404), json=_withdraw)],
    # Audit: stewards, each seeing their own communities' events.
    ("GET", "/audit"): [Case(lambda w: (made(w), "/audit")[1], stewards(200))],
    ("GET", "/api/v1/audit"): [Case(lambda w: (made(w), "/api/v1/audit")[1], stewards(200))],
    ("GET", "/audit/verify"): [Case(lambda w: "/audit/verify", stewards(200))],
    ("GET", "/api/v1/audit/verify"): [Case(lambda w: "/api/v1/audit/verify", stewards(200))],
    # Use a model: the page for everyone signed in; a use needs a model the role may see (m2 is not a translation
    # model: 400 where the role may see it, 404 where not); an upload without a file is a 400 for everyone.
    ("GET", "/use"): [Case(lambda w: "/use", signed(200))],
    ("GET", "/api/v1/use"): [Case(lambda w: "/api/v1/use", signed(200))],
    ("POST", "/use/transcribe"): [Case(lambda w: "/use/transcribe", signed(400), form=lambda w: {"model": "m2"})],
    ("POST", "/api/v1/transcribe"): [Case(lambda w: "/api/v1/transcribe", signed(400))],
    ("POST", "/use/translate"): [Case(lambda w: "/use/translate", a_only(400), form=_translate)],
    ("POST", "/api/v1/translate"): [Case(lambda w: "/api/v1/translate", a_only(400), json=_translate)],
    ("POST", "/use/monitor"): [Case(lambda w: "/use/monitor", signed(400), form=lambda w: {"model": "m2"})],
    ("POST", "/api/v1/monitor"): [Case(lambda w: "/api/v1/monitor", signed(400))],
    ("GET", "/use/jobs/{job_id}"): [Case(lambda w: f"/use/jobs/{_JOB}", signed(404))],
    ("GET", "/use/jobs/{job_id}/{name}"): [Case(lambda w: f"/use/jobs/{_JOB}/transcript.vtt", signed(404))],
    ("GET", "/api/v1/jobs/{job_id}"): [Case(lambda w: f"/api/v1/jobs/{_JOB}", signed(404))],
    ("GET", "/api/v1/jobs/{job_id}/{name}"): [Case(lambda w: f"/api/v1/jobs/{_JOB}/transcript.vtt", signed(404))],
}
