"""Schema creation and migrations (CONTRACT §6.4), compatible with the old tools.

Migration files are ``<id>_<name>_up.sql`` / ``<id>_<name>_down.sql`` pairs;
applied ids live in the ``gomigrate`` table the old tools used, so a database
they migrated is recognised and nothing is applied twice.  Scripts are split
into statements at ``;`` after whole-line ``--`` comments are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import attrs

from imagecatcher.db.repository import Repository

_UP = re.compile(r"^(\d+)_(\w+)_up\.sql$")
_DOWN = re.compile(r"^(\d+)_(\w+)_down\.sql$")


class MigrationError(Exception):
    """Migration files are inconsistent or the database cannot be migrated."""


@attrs.frozen
class Migration:
    """One up/down pair."""

    id: int
    name: str
    up: tuple[str, ...]
    down: tuple[str, ...]


def split_statements(text: str) -> list[str]:
    """Cut a script into statements at ``;``, ignoring ``--`` comment lines."""
    kept = "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith("--")
    )
    return [piece.strip() for piece in kept.split(";") if piece.strip()]


def default_sql_dir() -> Traversable:
    """The ``sql/`` directory: installed with the package, or the source tree's."""
    try:
        return resources.files("imagecatcher.sql")
    except ModuleNotFoundError:  # running from a source checkout
        return Path(__file__).resolve().parents[2] / "sql"


def _as_traversable(directory: Path | Traversable | None) -> Traversable:
    return default_sql_dir() if directory is None else directory


def load_migrations(directory: Path | Traversable | None = None) -> list[Migration]:
    """Read every migration pair of ``directory``, ordered by id."""
    root = _as_traversable(directory)
    ups: dict[int, tuple[str, Traversable]] = {}
    downs: dict[int, Traversable] = {}
    for entry in root.iterdir():
        if m := _UP.match(entry.name):
            ups[int(m.group(1))] = (m.group(2), entry)
        elif m := _DOWN.match(entry.name):
            downs[int(m.group(1))] = entry
    if set(ups) != set(downs):
        odd = sorted(set(ups) ^ set(downs))
        raise MigrationError(f"Invalid pair of migration files for id(s) {odd}")
    return [
        Migration(
            id=i,
            name=ups[i][0],
            up=tuple(split_statements(ups[i][1].read_text(encoding="utf-8"))),
            down=tuple(split_statements(downs[i].read_text(encoding="utf-8"))),
        )
        for i in sorted(ups)
    ]


def _init_script(name: str) -> list[str]:
    # Schema, seed and drop scripts always come with the package; a directory
    # given on the command line (the old -migrations_dir) holds migrations only.
    script = default_sql_dir().joinpath("init").joinpath(name)
    return split_statements(script.read_text(encoding="utf-8"))


@attrs.frozen
class Status:
    """Which migrations exist and which are applied."""

    initialised: bool
    applied: tuple[int, ...]
    available: tuple[Migration, ...]

    @property
    def pending(self) -> tuple[Migration, ...]:
        """Available migrations not yet applied, in order."""
        return tuple(m for m in self.available if m.id not in self.applied)


class Migrator:
    """Creates, upgrades and downgrades a schema through a Repository."""

    def __init__(
        self, repo: Repository, directory: Path | Traversable | None = None
    ) -> None:
        self._repo = repo
        self._dir = directory

    async def status(self) -> Status:
        """Read the database's migration state."""
        tables = await self._repo.tables()
        initialised = "gomigrate" in tables
        applied = tuple(await self._repo.applied_migrations()) if initialised else ()
        return Status(initialised, applied, tuple(load_migrations(self._dir)))

    async def init(self) -> list[int]:
        """Create the schema and seed rows on an empty database, then upgrade.

        On a database that already has the schema this only upgrades, so it is
        safe to run on every start.  Returns the migration ids applied.
        """
        tables = await self._repo.tables()
        if "gomigrate" not in tables:
            if tables & {"ini_files_denorm", "tem_camera_images"}:
                raise MigrationError(
                    "the database has imagecatcher tables but no gomigrate table;"
                    " refusing to guess its schema version"
                )
            await self._repo.run_script(_init_script("schema.sql"))
            await self._repo.run_script(_init_script("seed.sql"))
        return await self.upgrade()

    async def drop(self) -> None:
        """Drop every table the schema script creates (children first)."""
        await self._repo.run_script(_init_script("drop.sql"))

    async def reset(self) -> list[int]:
        """Drop everything, then :meth:`init`."""
        await self.drop()
        return await self.init()

    async def upgrade(self, to: int | None = None) -> list[int]:
        """Apply pending migrations in id order (up to ``to``); return their ids."""
        status = await self.status()
        done = []
        for migration in status.pending:
            if to is not None and migration.id > to:
                break
            await self._repo.apply_migration(migration.id, migration.up)
            done.append(migration.id)
        return done

    async def downgrade(self, to: int | None = None, steps: int = 1) -> list[int]:
        """Revert the newest applied migrations: ``steps`` of them, or all above ``to``."""
        status = await self.status()
        by_id = {m.id: m for m in status.available}
        targets: Iterable[int] = sorted(status.applied, reverse=True)
        if to is None:
            targets = list(targets)[:steps]
        else:
            targets = [i for i in targets if i > to]
        done = []
        for migration_id in targets:
            migration = by_id.get(migration_id)
            if migration is None:
                raise MigrationError(
                    f"migration {migration_id} is applied but has no files here"
                )
            await self._repo.revert_migration(migration.id, migration.down)
            done.append(migration.id)
        return done
