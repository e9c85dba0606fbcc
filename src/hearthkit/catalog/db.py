"""Open the catalog database and bring its schema to the newest Alembic revision."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    """WAL + foreign keys: concurrent readers during a run, integrity always; freed space is zeroed."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA secure_delete=ON")  # words moved out of a row (sealing) must not stay in its old page
    cur.close()


def normalise_url(url: str) -> str:
    """Pin the driver of a bare postgresql:// URL to psycopg2 (SQLAlchemy 2.1 would pick psycopg 3)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg2://" + url[len(bare):]
    return url


def alembic_config(url: str):
    """An Alembic Config pointing at the packaged migrations, for URL."""
    from alembic.config import Config

    url = normalise_url(url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at URL to REVISION (head by default), keeping its data."""
    from alembic import command

    command.upgrade(alembic_config(url), revision)


class Catalog:
    """A connection to the catalog: an engine and a session factory."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, create: bool = False) -> Catalog:
        """Open the catalog at URL; migrate to head when CREATE (init) or when it is behind."""
        engine = create_engine(normalise_url(url))
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        cat = cls(engine)
        if create or cat.needs_upgrade():
            upgrade(url)
        return cat

    def needs_upgrade(self) -> bool:
        """True when the database's revision is not the newest."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config(self.engine.url.render_as_string(False))).get_current_head()
        with self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        return current != head

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction: committed on success, rolled back whole on any error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def scrub(self) -> None:
        """Leave no old copy of changed rows in the database files (after sealing a collection's words)."""
        if self.engine.dialect.name == "sqlite":
            # secure_delete zeroed the freed space in the new page versions; write them home, empty the log.
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        elif self.engine.dialect.name == "postgresql":
            # Dead row versions stay in the table's pages until it is rewritten.
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM FULL items")

    def close(self) -> None:
        self.engine.dispose()
