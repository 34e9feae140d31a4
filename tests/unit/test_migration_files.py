"""Unit tests for reading migration files (CONTRACT §6.4); no database needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagecatcher.db.migrations import (
    MigrationError,
    load_migrations,
    split_statements,
)


def write_pair(directory: Path, migration_id: int, name: str, up: str = "") -> None:
    """Write an up/down pair for ``migration_id`` into ``directory``."""
    up_sql = up or f"CREATE TABLE t{migration_id} (id INT);"
    (directory / f"{migration_id}_{name}_up.sql").write_text(up_sql, encoding="utf-8")
    (directory / f"{migration_id}_{name}_down.sql").write_text(
        f"DROP TABLE t{migration_id};", encoding="utf-8"
    )


def test_split_statements_drops_comments_and_empty_pieces() -> None:
    """Whole-line comments and empty statements disappear; statements are trimmed."""
    script = """
-- a header comment
CREATE TABLE a (id INT);
   -- an indented comment; with a semicolon
;;
INSERT INTO a VALUES (1)
;
  ;
"""
    assert split_statements(script) == [
        "CREATE TABLE a (id INT)",
        "INSERT INTO a VALUES (1)",
    ]


def test_split_statements_keeps_multiline_statement() -> None:
    """A statement spread over several lines stays one statement."""
    script = "ALTER TABLE a\n  ADD COLUMN b INT,\n  ADD COLUMN c INT;\n"
    assert split_statements(script) == [
        "ALTER TABLE a\n  ADD COLUMN b INT,\n  ADD COLUMN c INT"
    ]


def test_split_statements_of_comment_only_script_is_empty() -> None:
    """A script holding only comments and blanks yields no statement."""
    assert split_statements("-- nothing\n\n   -- still nothing\n") == []


def test_split_statements_without_final_semicolon() -> None:
    """The last statement needs no terminating semicolon."""
    assert split_statements("SELECT 1; SELECT 2") == ["SELECT 1", "SELECT 2"]


def test_load_migrations_pairs_files(tmp_path: Path) -> None:
    """Each id's up and down files become one Migration with split statements."""
    write_pair(
        tmp_path, 1, "first", up="-- comment\nCREATE TABLE t1 (id INT);\nSELECT 1;"
    )
    (migration,) = load_migrations(tmp_path)
    assert migration.id == 1 and migration.name == "first"
    assert migration.up == ("CREATE TABLE t1 (id INT)", "SELECT 1")
    assert migration.down == ("DROP TABLE t1",)


def test_load_migrations_ignores_other_files(tmp_path: Path) -> None:
    """Files not named <id>_<name>_up|down.sql are ignored."""
    write_pair(tmp_path, 1, "first")
    for name in (".placeholder", "README.md", "1_first_up.sql.bak", "x_first_up.sql"):
        (tmp_path / name).write_text("garbage", encoding="utf-8")
    assert [m.id for m in load_migrations(tmp_path)] == [1]


def test_load_migrations_orders_ids_numerically(tmp_path: Path) -> None:
    """Ids are ordered as numbers: 2 comes before 10."""
    for migration_id, name in ((10, "ten"), (2, "two"), (1, "one")):
        write_pair(tmp_path, migration_id, name)
    migrations = load_migrations(tmp_path)
    assert [(m.id, m.name) for m in migrations] == [(1, "one"), (2, "two"), (10, "ten")]


def test_load_migrations_of_empty_directory(tmp_path: Path) -> None:
    """A directory without migration files yields no migration."""
    (tmp_path / ".placeholder").write_text("", encoding="utf-8")
    assert load_migrations(tmp_path) == []


def test_up_without_down_is_an_error(tmp_path: Path) -> None:
    """An up file without its down file raises MigrationError naming the id."""
    write_pair(tmp_path, 1, "first")
    (tmp_path / "2_second_up.sql").write_text("SELECT 1;", encoding="utf-8")
    with pytest.raises(MigrationError, match=r"^Invalid pair .*\[2\]"):
        load_migrations(tmp_path)


def test_down_without_up_is_an_error(tmp_path: Path) -> None:
    """A down file without its up file raises MigrationError."""
    (tmp_path / "3_third_down.sql").write_text("SELECT 1;", encoding="utf-8")
    with pytest.raises(MigrationError, match=r"^Invalid pair"):
        load_migrations(tmp_path)


def test_shipped_migrations_start_at_one() -> None:
    """The shipped sql directory holds migrations 1, 2, ... in order."""
    migrations = load_migrations()
    ids = [m.id for m in migrations]
    assert ids[:2] == [1, 2]
    assert ids == sorted(ids)
    assert all(m.up and m.down for m in migrations)
