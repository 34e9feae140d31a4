"""Database: driver errors meaning "the database cannot work now" become DatabaseError."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, cast

import pymysql
import pytest

from twisted.enterprise import adbapi
from twisted.internet import defer
from twisted.internet.defer import Deferred

from imagecatcher.db.dialect import MySQLDialect
from imagecatcher.db.pool import Database, as_database_error
from imagecatcher.domain import DatabaseError
from tests.storefakes import run


class _FailingPool:
    """A pool whose interactions raise the given errors, one per call, then succeed."""

    def __init__(self, *errors: Exception) -> None:
        self._errors = list(errors)
        self.calls = 0

    def runInteraction(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        self.calls += 1
        if self._errors:
            return defer.fail(self._errors.pop(0))
        return defer.succeed("done")


def _database(pool: _FailingPool) -> Database:
    return Database(cast(adbapi.ConnectionPool, pool), MySQLDialect())


def _nothing(cursor: Any) -> None:
    """An interaction that is never really run."""


def test_a_refused_connection_is_a_database_error_with_the_drivers_text() -> None:
    """An OperationalError (server down) reaches the caller as DatabaseError."""
    down = pymysql.err.OperationalError(2003, "Can't connect to MySQL server")
    with pytest.raises(DatabaseError) as raised:
        run(_database(_FailingPool(down)).run(_nothing))
    assert str(raised.value) == str(down) and raised.value.__cause__ is down


def test_an_integrity_error_passes_unchanged() -> None:
    """A unique key hit stays the driver's IntegrityError (callers retry on it)."""
    duplicate = pymysql.err.IntegrityError(1062, "Duplicate entry")
    with pytest.raises(pymysql.err.IntegrityError):
        run(_database(_FailingPool(duplicate)).run(_nothing))


def test_a_lost_connection_is_retried_once_when_idempotent() -> None:
    """run_idempotent repeats after one ConnectionLost and succeeds."""
    pool = _FailingPool(adbapi.ConnectionLost())
    assert run(_database(pool).run_idempotent(_nothing)) == "done"
    assert pool.calls == 2


def test_a_second_lost_connection_is_a_database_error() -> None:
    """Two ConnectionLost in a row give a DatabaseError saying the link was lost."""
    pool = _FailingPool(adbapi.ConnectionLost(), adbapi.ConnectionLost())
    with pytest.raises(DatabaseError, match="connection to the database was lost"):
        run(_database(pool).run_idempotent(_nothing))


def test_sqlite_operational_errors_translate_and_others_do_not() -> None:
    """SQLite's "database is locked" becomes DatabaseError; a ValueError stays."""
    locked = as_database_error(sqlite3.OperationalError("database is locked"))
    assert isinstance(locked, DatabaseError) and str(locked) == "database is locked"
    other = ValueError("x")
    assert as_database_error(other) is other
