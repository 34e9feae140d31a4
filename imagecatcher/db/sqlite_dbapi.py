"""A DB-API 2.0 module face for :func:`sqlite_connect`, for ``adbapi``.

``adbapi.ConnectionPool`` takes a module name and calls its ``connect``; this
module gives it SQLite connections opened the way the service needs them.
"""

from sqlite3 import DatabaseError, Error, IntegrityError, OperationalError

from imagecatcher.db.dialect import sqlite_connect as connect

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

__all__ = [
    "DatabaseError",
    "Error",
    "IntegrityError",
    "OperationalError",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
