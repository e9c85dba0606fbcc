"""The web app over a PostgreSQL catalog (`make test` starts a throwaway server): sign-in, the access filter with
the sheet's protocols (JSON functions differ per backend), counts, audio and a steward action."""

from __future__ import annotations

import os
import uuid

import pytest
from fastapi.testclient import TestClient

from tests.web.conftest import ROLES, SECRET, VISIBLE, WORDS, _build, csrf, login


@pytest.fixture
def pg_url():
    base = os.environ.get("HEARTH_TEST_PG")
    if not base:
        pytest.skip("PostgreSQL not available: HEARTH_TEST_PG is unset; `make test` starts a throwaway server "
                    "(scripts/with-postgres.sh) and sets it")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from hearthkit.catalog.db import normalise_url

    name = f"web_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(normalise_url(base)).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def test_web_app_on_postgresql(pg_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HEARTH_DB", pg_url)
    built = _build(tmp_path / "ws")
    from hearthkit.web.app import create_app

    app = create_app(built.ws, secret=SECRET)
    assert app.state.catalog.engine.dialect.name == "postgresql"
    for role in ROLES:
        c = login(TestClient(app), role)
        found = c.get("/api/v1/search", params={"q": "words"}).json()
        assert {x["external_id"] for x in found["items"]} == {e for e in VISIBLE[role] if "words" in WORDS[e]}, role
        for ext, iid in built.items.items():
            assert c.get(f"/api/v1/items/{iid}").status_code == (200 if ext in VISIBLE[role] else 404), (role, ext)
    c = login(TestClient(app), "protocol")
    assert c.get(f"/items/{built.items['comm-prot']}/audio").content == built.audio["comm-prot"]
    s = login(TestClient(app), "steward_a")
    r = s.post(f"/items/{built.items['comm-1']}/labels", data={"key": "tk:verified", "csrf_token": csrf(s)},
               follow_redirects=False)
    assert r.status_code == 303
    app.state.catalog.close()
