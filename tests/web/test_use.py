"""Use a model in the browser and the API: transcripts as VTT/ELAN, one serve event per successful use, none for a
refused or bad one; upload limits, content checks, rate limits, the model loaded once per worker."""

from __future__ import annotations

import io
import time

import pytest
from fastapi.testclient import TestClient

from hearthkit.catalog.models import Model
from hearthkit.governance import audit
from hearthkit.web.app import create_app
from hearthkit.web.ratelimit import RateLimiter
from hearthkit.web.routes import use
from hearthkit.workspace import open_workspace
from tests.web.w2world import make_world, sign_in


@pytest.fixture
def app(tiny_asr_model, tmp_path):
    world = make_world(tiny_asr_model[0], tmp_path)
    return create_app(open_workspace(world.root), secret=b"w2-test-secret-" * 3)


@pytest.fixture
def wav(tiny_speech_archive) -> bytes:
    return next(p for p in sorted(tiny_speech_archive.rglob("*.wav"))).read_bytes()


def _post(c: TestClient, csrf: str, data: bytes, name: str = "rec.wav", ctype: str = "audio/wav",
          model: str = "tiny-asr"):
    return c.post("/use/transcribe", data={"model": model, "purpose": "community_use", "csrf_token": csrf},
                  files={"recording": (name, io.BytesIO(data), ctype)}, follow_redirects=False)


def _wait(c: TestClient, job: str) -> dict:
    for _ in range(600):
        doc = c.get(f"/api/v1/jobs/{job}").json()
        if doc["status"] != "running":
            return doc
        time.sleep(0.05)
    raise AssertionError("the transcription job did not finish")


def test_member_transcribes_and_downloads_vtt_and_elan(app, wav):
    c = TestClient(app)
    csrf = sign_in(c, "member")
    assert "tiny-asr" in c.get("/use").text
    r = _post(c, csrf, wav)
    assert r.status_code == 303
    job = r.headers["location"].rsplit("/", 1)[1]
    doc = _wait(c, job)
    assert doc["status"] == "done" and doc["result"]["segments"], doc
    vtt = c.get(f"/use/jobs/{job}/transcript.vtt")
    assert vtt.text.startswith("WEBVTT") and "-->" in vtt.text and "attachment" in vtt.headers["content-disposition"]
    assert "<ANNOTATION_DOCUMENT" in c.get(f"/use/jobs/{job}/transcript.eaf").text
    assert "Download WebVTT" in c.get(f"/use/jobs/{job}").text
    serve = audit.events(app.state.catalog, "serve")
    assert len(serve) == 1 and serve[0]["actor"] == "ngaio" and serve[0]["data"]["action"] == "transcribe"
    # Another person cannot see the job or its transcript.
    other = TestClient(app)
    sign_in(other, "researcher")
    assert other.get(f"/use/jobs/{job}/transcript.vtt").status_code == 404


def test_api_twin_waits_and_the_model_is_loaded_once(app, wav):
    from hearthkit.governance import identity

    _, token = identity.create_token(app.state.catalog, "ngaio", "script", ["read", "transcribe"])
    c = TestClient(app)
    auth = {"Authorization": f"Bearer {token}"}
    for _ in range(2):
        r = c.post("/api/v1/transcribe?wait=true", data={"model": "tiny-asr"},
                   files={"recording": ("r.wav", io.BytesIO(wav), "audio/wav")}, headers=auth)
        assert r.status_code == 200 and r.json()["status"] == "done"
    assert app.state.models.loads == 1
    assert len(audit.events(app.state.catalog, "serve")) == 2
    _, reader = identity.create_token(app.state.catalog, "ngaio", "reader", ["read"])
    r = c.post("/api/v1/transcribe", data={"model": "tiny-asr"},
               files={"recording": ("r.wav", io.BytesIO(wav), "audio/wav")},
               headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403


def test_bad_uploads_and_refused_uses_record_no_serve_event(app, wav, monkeypatch):
    c = TestClient(app)
    csrf = sign_in(c, "member")
    r = _post(c, csrf, b"RIFF....WAVEfmt this is not audio at all", name="broken.wav")
    assert r.status_code == 400 and "not a readable audio file" in r.text and "Traceback" not in r.text
    assert _post(c, csrf, wav, ctype="text/html").status_code == 415
    assert _post(c, csrf, b"").status_code == 400
    monkeypatch.setattr(use, "MAX_UPLOAD", 1000)
    assert _post(c, csrf, wav).status_code == 413  # counted while it is written
    r = _post(c, csrf, bytes(3 << 20))  # refused from its Content-Length, before the body is parsed
    assert r.status_code == 413 and "larger than" in r.text
    monkeypatch.undo()
    assert _post(c, csrf, wav, model="no-such-model").status_code == 404
    with app.state.catalog.session() as s:  # a model that needs retraining is refused by the serving guard
        s.query(Model).filter_by(name="tiny-asr").one().status = "needs-retrain"
    r = _post(c, csrf, wav)
    assert r.status_code == 403 and "needs retraining" in r.text
    assert audit.events(app.state.catalog, "serve") == []
    assert [e["data"]["action"] for e in audit.events(app.state.catalog, "serve_refused")] == ["transcribe"]
    # Someone with no role where the model's data came from does not even learn it exists.
    other = TestClient(app)
    ocsrf = sign_in(other, "registered")
    assert _post(other, ocsrf, wav).status_code == 404


def test_rate_limit_on_heavy_endpoints(app, wav):
    c = TestClient(app)
    csrf = sign_in(c, "member")
    use.serving_state(app)
    app.state.limits = RateLimiter(per_minute=2)
    codes = [_post(c, csrf, wav).status_code for _ in range(3)]
    assert codes[:2] == [303, 303] and codes[2] == 429
    r = _post(c, csrf, wav)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1


def test_concurrent_uses_all_succeed_with_one_event_each(app, wav):
    """Eight clients at once: SQLite must not lose a use to two appends racing for the audit chain's head."""
    from concurrent.futures import ThreadPoolExecutor

    from hearthkit.governance import identity

    _, token = identity.create_token(app.state.catalog, "ngaio", "load", ["read", "transcribe"])

    def one(_):
        with TestClient(app) as c:
            r = c.post("/api/v1/transcribe?wait=true", data={"model": "tiny-asr"},
                       files={"recording": ("r.wav", io.BytesIO(wav), "audio/wav")},
                       headers={"Authorization": f"Bearer {token}"})
            return r.status_code, r.json().get("error")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert results == [(200, None)] * 16
    assert len(audit.events(app.state.catalog, "serve")) == 16
    assert audit.verify(app.state.catalog).ok
