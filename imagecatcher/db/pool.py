"""Connection pools: one :class:`Database` over ``adbapi`` for either engine.

Every interaction runs in a pool thread inside one transaction: returning
commits, raising rolls back (STYLE §5).  A dropped MySQL link surfaces as
``adbapi.ConnectionLost``; :meth:`Database.run_idempotent` retries it once,
and only when the caller says the interaction is safe to repeat.  Errors that
mean the database cannot work now (down, link lost, lock wait timed out:
the drivers' ``OperationalError`` and ``InterfaceError``) reach callers as
:class:`~imagecatcher.domain.DatabaseError` with the driver's message, an
expected failure that is logged as a line, not a traceback; errors about a
statement (``IntegrityError``, which callers handle) pass unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pymysql

from twisted.enterprise import adbapi
from twisted.logger import Logger

from imagecatcher.config import Config
from imagecatcher.db import sqlite_dbapi
from imagecatcher.db.dialect import Dialect, MySQLDialect, SQLiteDialect
from imagecatcher.domain import DatabaseError

T = TypeVar("T")

log = Logger()


#: Driver errors meaning that the database cannot run the work now.
UNAVAILABLE: tuple[type[Exception], ...] = (
    adbapi.ConnectionLost,
    pymysql.err.OperationalError,
    pymysql.err.InterfaceError,
    sqlite_dbapi.OperationalError,
)


def as_database_error(error: Exception) -> Exception:
    """:class:`DatabaseError` for a driver error of :data:`UNAVAILABLE`, else ``error``."""
    if isinstance(error, DatabaseError) or not isinstance(error, UNAVAILABLE):
        return error
    if isinstance(error, adbapi.ConnectionLost):
        return DatabaseError("the connection to the database was lost")
    return DatabaseError(str(error) or type(error).__name__)


class DatabaseUnavailable(Exception):
    """The database cannot be opened or is not initialised; the text says why."""


#: Errors counted as database errors (by class): the drivers' own.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    *UNAVAILABLE,
    pymysql.err.MySQLError,
    sqlite_dbapi.Error,
)


class Database:
    """An ``adbapi`` pool plus the dialect its statements are translated to.

    ``on_error`` is told the class name of every driver error an interaction
    raised (the metrics' ``imagecatcher_database_errors_total``).
    """

    def __init__(
        self,
        pool: adbapi.ConnectionPool,
        dialect: Dialect,
        on_error: Callable[[str], None] = lambda kind: None,
    ) -> None:
        self._pool = pool
        self.dialect = dialect
        self.on_error = on_error

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
    ) -> T:
        """Run ``fn(cursor, *args)`` in one transaction on a pool thread."""
        try:
            return await self._run(fn, args)
        except UNAVAILABLE as e:
            raise as_database_error(e) from e

    async def run_idempotent(
        self,
        fn: Callable[..., T],
        *args: Any,
    ) -> T:
        """Like :meth:`run`, retried once on a dropped connection."""
        try:
            try:
                return await self._run(fn, args)
            except adbapi.ConnectionLost:
                log.warn("database connection lost; retrying {fn}", fn=fn.__name__)
                return await self._run(fn, args)
        except UNAVAILABLE as e:
            raise as_database_error(e) from e

    async def _run(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            result: T = await self._pool.runInteraction(self._interaction, fn, args)
        except DRIVER_ERRORS as e:
            self.on_error(type(e).__name__)
            raise
        return result

    def _interaction(self, txn: Any, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        cursor = self.dialect.wrap(txn)
        self.dialect.begin(cursor)
        return fn(cursor, *args)

    def close(self) -> None:
        """Close every pooled connection (the pool cannot be used afterwards)."""
        self._pool.close()


#: Database hosts on this machine: no TLS to them.
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})


def open_database(config: Config, reactor: Any) -> Database:
    """Build the pool named by ``DB_DRIVER``; connections open lazily."""
    if config.db_driver == "sqlite":
        # One connection: SQLite serialises writers anyway, and one thread
        # avoids "database is locked" between our own connections.
        pool = adbapi.ConnectionPool(
            "imagecatcher.db.sqlite_dbapi",
            str(Path(config.sqlite_path)),
            cp_reactor=reactor,
            cp_min=1,
            cp_max=1,
            cp_noisy=False,
        )
        return Database(pool, SQLiteDialect())
    cap = config.max_db_connections if config.max_db_connections > 0 else 10
    args = config.mysql_args()
    if args["host"] in _LOOPBACK:
        # pymysql tries TLS by default, and building its context (loading the
        # system's CA certificates) costs tens of ms per connection: nothing
        # is gained on the same host.
        args["ssl_disabled"] = True
    pool = adbapi.ConnectionPool(
        "pymysql",
        cp_reactor=reactor,
        cp_min=1,
        cp_max=cap,
        cp_noisy=False,
        cp_reconnect=True,
        charset="utf8mb4",
        autocommit=False,
        connect_timeout=10,
        # Short transactions that should see each other's commits (next-tile
        # claims by several daemons).
        init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        **args,
    )
    return Database(pool, MySQLDialect())


def check_database(config: Config) -> None:
    """Synchronously check that the database opens and has been initialised.

    Run before any port is bound, so that a wrong configuration stops the
    daemon with one clear message instead of failing on the first request.
    """
    if config.db_driver == "sqlite":
        path = Path(config.sqlite_path)
        if not path.exists():
            raise DatabaseUnavailable(
                f"SQLITE_PATH: database file {str(path)!r} does not exist"
                " (create it with: imagecatcher-tools --config ... db-init)"
            )
        try:
            conn = sqlite_dbapi.connect(str(path))
        except sqlite_dbapi.Error as e:
            raise DatabaseUnavailable(f"SQLITE_PATH: cannot open {path}: {e}") from e
        dialect: Dialect = SQLiteDialect()
    else:
        args = config.mysql_args()
        try:
            conn = pymysql.connect(connect_timeout=5, **args)
        except pymysql.MySQLError as e:
            raise DatabaseUnavailable(
                f"DB_HOST/DB_NAME/DB_USER: cannot connect to MySQL at"
                f" {args['host']}:{args['port']} database {args['database']!r}: {e}"
            ) from e
        dialect = MySQLDialect()
    try:
        cursor = dialect.wrap(conn.cursor())
        cursor.execute(dialect.list_tables_sql())
        tables = {row[0] for row in cursor.fetchall()}
    finally:
        conn.close()
    if "gomigrate" not in tables:
        raise DatabaseUnavailable(
            "the database has no schema yet"
            " (create it with: imagecatcher-tools --config ... db-init)"
        )
