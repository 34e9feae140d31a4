"""What differs between MySQL/MariaDB and SQLite, in one place (STYLE §5).

Statements (queries and the files under ``sql/``) are written once, in the
MySQL dialect with ``%s`` placeholders.  :class:`SQLiteDialect` rewrites the
few constructs SQLite spells differently; :class:`MySQLDialect` passes them
through.  Nothing else in the code asks which engine it talks to.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Protocol


class Cursor(Protocol):
    """The DB-API cursor subset the repository uses."""

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    @property
    def description(self) -> Sequence[Sequence[Any]] | None: ...

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...


class Dialect:
    """MySQL/MariaDB: statements are already in this dialect."""

    name = "mysql"
    #: Write transactions worth running at once (group commit, db.batch).
    write_connections = 2

    @property
    def integrity_error(self) -> type[Exception]:
        """The driver's IntegrityError (a unique key was hit)."""
        import pymysql

        error: type[Exception] = pymysql.err.IntegrityError
        return error

    def begin(self, cursor: Cursor) -> None:
        """Start the interaction's transaction (pymysql opens one implicitly)."""

    def translate(self, sql: str) -> str:
        """Return ``sql`` in this engine's spelling."""
        return sql

    def wrap(self, cursor: Any) -> Cursor:
        """Return a cursor whose statements are translated for this engine."""
        return cursor  # type: ignore[no-any-return]

    def list_tables_sql(self) -> str:
        """A query returning the names of the database's tables, one per row."""
        return "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"


MySQLDialect = Dialect


_AUTO_PK = re.compile(
    r"\b(?:BIG)?INT(?:EGER)?\s+NOT\s+NULL\s+AUTO_INCREMENT\s+PRIMARY\s+KEY\b", re.I
)
_TABLE_OPTIONS = re.compile(
    r"\)\s*ENGINE\s*=\s*\w+(?:\s+DEFAULT\s+CHARSET\s*=\s*\w+)?", re.I
)
_DROP_INDEX_ON = re.compile(r"\bDROP\s+INDEX\s+(\w+)\s+ON\s+\w+", re.I)
_FOR_UPDATE = re.compile(r"\s+FOR\s+UPDATE(?:\s+SKIP\s+LOCKED)?\b", re.I)


@lru_cache(maxsize=512)
def _to_sqlite(sql: str) -> str:
    sql = sql.replace("%s", "?")
    sql = _AUTO_PK.sub("INTEGER PRIMARY KEY AUTOINCREMENT", sql)
    sql = _TABLE_OPTIONS.sub(")", sql)
    sql = _DROP_INDEX_ON.sub(r"DROP INDEX \1", sql)
    # A write transaction (BEGIN IMMEDIATE) already locks the whole database.
    return _FOR_UPDATE.sub("", sql)


class SQLiteDialect(Dialect):
    """SQLite 3.35+: placeholders, DDL spellings and locking differ."""

    name = "sqlite"
    write_connections = 1  # one connection; SQLite has one writer anyway

    @property
    def integrity_error(self) -> type[Exception]:
        return sqlite3.IntegrityError

    def begin(self, cursor: Cursor) -> None:
        # The connection runs in autocommit mode (isolation_level=None) so that
        # DDL is transactional too; every interaction takes the write lock up
        # front, which makes read-modify-write interactions atomic.
        cursor.execute("BEGIN IMMEDIATE")

    def translate(self, sql: str) -> str:
        return _to_sqlite(sql)

    def wrap(self, cursor: Any) -> Cursor:
        return _TranslatingCursor(cursor, self)

    def list_tables_sql(self) -> str:
        return "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"


class _TranslatingCursor:
    """A cursor that rewrites each statement for its dialect."""

    def __init__(self, cursor: Any, dialect: Dialect) -> None:
        self._cursor = cursor
        self._dialect = dialect

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid  # type: ignore[no-any-return]

    @property
    def description(self) -> Sequence[Sequence[Any]] | None:
        return self._cursor.description  # type: ignore[no-any-return]

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self._cursor.execute(self._dialect.translate(sql), tuple(params or ()))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> Any:
        return self._cursor.executemany(self._dialect.translate(sql), params)

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def fetchall(self) -> Sequence[Any]:
        return self._cursor.fetchall()  # type: ignore[no-any-return]


def _concat(*parts: Any) -> str | None:
    if any(p is None for p in parts):
        return None  # MySQL's CONCAT is NULL when any argument is
    return "".join(str(p) for p in parts)


def _adapt_datetime(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S.%f").removesuffix(".000000")


def _convert_datetime(raw: bytes) -> datetime:
    return datetime.fromisoformat(raw.decode("ascii"))


def sqlite_connect(path: str, **_ignored: Any) -> sqlite3.Connection:
    """Open an SQLite database the way the service uses it.

    Timestamps are stored as ``YYYY-MM-DD HH:MM:SS`` text, like MySQL's
    DATETIME, and read back as :class:`datetime`; foreign keys are enforced as
    InnoDB enforces them; ``CONCAT`` exists as in MySQL.
    """
    sqlite3.register_adapter(datetime, _adapt_datetime)  # idempotent, process-wide
    sqlite3.register_converter("DATETIME", _convert_datetime)
    conn = sqlite3.connect(
        path,
        timeout=30.0,
        isolation_level=None,
        check_same_thread=False,
        detect_types=sqlite3.PARSE_DECLTYPES,
    )
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.create_function("CONCAT", -1, _concat, deterministic=True)
    return conn
