"""Fixtures for policy tests: a fresh SQLite catalog and a builder over it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from builder import Builder  # noqa: E402

from hearthkit.catalog.db import Catalog  # noqa: E402


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory) -> Path:
    """An empty catalog at head, migrated once; tests copy it (Alembic per test would cost seconds)."""
    path = tmp_path_factory.mktemp("template") / "catalog.sqlite"
    Catalog.open(f"sqlite:///{path}", create=True).close()
    return path


@pytest.fixture
def catalog(tmp_path: Path, migrated_db: Path) -> Catalog:
    shutil.copy(migrated_db, tmp_path / "catalog.sqlite")
    cat = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield cat
    cat.close()


@pytest.fixture
def b(catalog: Catalog) -> Builder:
    return Builder(catalog)
