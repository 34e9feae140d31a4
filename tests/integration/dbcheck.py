"""Synchronous read-only queries for checking what a daemon wrote."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import pymysql

from imagecatcher.config import Config
from imagecatcher.db.dialect import SQLiteDialect


def rows(config: Config, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one query (``%s`` placeholders) on the configured database."""
    if config.db_driver == "sqlite":
        conn = sqlite3.connect(config.sqlite_path)
        try:
            return [
                tuple(r) for r in conn.execute(SQLiteDialect().translate(sql), params)
            ]
        finally:
            conn.close()
    mysql = pymysql.connect(**config.mysql_args())
    try:
        with mysql.cursor() as cur:
            cur.execute(sql, params)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        mysql.close()


def scalar(config: Config, sql: str, params: Sequence[Any] = ()) -> Any:
    """The first column of the first row."""
    return rows(config, sql, params)[0][0]


def execute(config: Config, sql: str, params: Sequence[Any] = ()) -> None:
    """Run one statement (``%s`` placeholders) and commit it."""
    if config.db_driver == "sqlite":
        conn = sqlite3.connect(config.sqlite_path)
        try:
            with conn:
                conn.execute(SQLiteDialect().translate(sql), params)
        finally:
            conn.close()
        return
    mysql = pymysql.connect(**config.mysql_args(), autocommit=True)
    try:
        with mysql.cursor() as cur:
            cur.execute(sql, params)
    finally:
        mysql.close()
