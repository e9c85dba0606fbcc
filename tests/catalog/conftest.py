"""Catalog tests run on both backends: SQLite, and a real PostgreSQL server (`make test` starts one)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

PG_SKIP = ("PostgreSQL not available: HEARTH_TEST_PG is unset; `make test` starts a throwaway server "
           "(scripts/with-postgres.sh) and sets it")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> str:
    """A URL to a fresh, empty database on each backend; the PostgreSQL one is dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.sqlite'}"
        return
    base = os.environ.get("HEARTH_TEST_PG")
    if not base:
        pytest.skip(PG_SKIP)
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from hearthkit.catalog.db import normalise_url

    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalise_url(base)).set(database=name).render_as_string(hide_password=False)
    yield url

    # Drop it even if a test left connections open.
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()
