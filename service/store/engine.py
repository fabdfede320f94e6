"""Engines and schema migrations for SQLite and PostgreSQL.

SQLite: WAL journal (readers do not block the writer), ``busy_timeout`` 30 s, and every write
transaction opened with ``BEGIN IMMEDIATE`` so that a transaction that reads and then writes
cannot fail half-way with SQLITE_BUSY; connections are not pooled (safe across threads and
forks). PostgreSQL: a pooled engine with pre-ping.

Migrations are Alembic revisions in ``service/store/migrations``, run programmatically;
concurrent start-ups serialise on an advisory lock (PostgreSQL) or an ``flock`` on a file next
to the database (SQLite).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_PG_MIGRATION_LOCK = 0x706C63657274  # "plcert": advisory lock key for concurrent start-ups


def make_engine(database_url: str, *, echo: bool = False) -> Engine:
    """An engine configured as described in the module docstring."""
    if not database_url.startswith("sqlite"):
        return create_engine(database_url, echo=echo, pool_pre_ping=True)
    path = sqlite_path(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        database_url,
        echo=echo,
        poolclass=NullPool,
        connect_args={"timeout": 30, "check_same_thread": False},
    )
    event.listen(engine, "connect", _sqlite_on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def migrate(engine: Engine) -> None:
    """Upgrade the schema to the newest revision (idempotent; safe across processes)."""
    from alembic import command
    from alembic.config import Config

    with _migration_lock(engine) as conn:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    if engine.dialect.name == "sqlite":
        path = sqlite_path(str(engine.url))
        if path is None:  # in-memory database: one process only
            with engine.connect() as conn:
                yield conn
            return
        with open(path.with_name(path.name + ".migrate-lock"), "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                with engine.connect() as conn:
                    yield conn
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for in-memory databases)."""
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return Path(path.split("?", 1)[0])


def _sqlite_on_connect(dbapi_conn: Any, _record: Any) -> None:
    # Take over transaction control from the sqlite3 module so that writes can BEGIN IMMEDIATE
    # (a deferred transaction that reads first and then writes can fail with SQLITE_BUSY).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    readonly = conn.get_execution_options().get("plcert_readonly", False)
    conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")
