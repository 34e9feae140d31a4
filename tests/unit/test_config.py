"""Unit tests for the configuration loader (CONTRACT §10.1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
import pytest

from imagecatcher import config as config_module
from imagecatcher.config import Config, ConfigError, parse_duration, to_endpoint

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config.json"


def write_json(directory: Path, name: str, data: Any) -> Path:
    """Write ``data`` as JSON to ``directory/name`` and return the path."""
    path = directory / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def load(*paths: Path, environ: dict[str, str] | None = None) -> Config:
    """Load ``paths`` with an empty environment unless one is given."""
    return Config.load(paths, environ={} if environ is None else environ)


def test_later_file_replaces_map_whole(tmp_path: Path) -> None:
    """A map key of a later file replaces the earlier map instead of merging."""
    first = write_json(
        tmp_path,
        "a.json",
        {"JFS_MAPPING": {"PING": "FAFB", "FAFB": "FAFB"}, "DB_NAME": "one"},
    )
    second = write_json(tmp_path, "b.json", {"JFS_MAPPING": {"X": "Y"}})
    config = load(first, second)
    assert dict(config.jfs_mapping) == {"X": "Y"}
    assert config.db_name == "one"


def test_later_file_wins_for_scalars(tmp_path: Path) -> None:
    """A scalar key set in two files takes the value of the later file."""
    first = write_json(tmp_path, "a.json", {"DB_NAME": "one", "MAIL_PORT": 25})
    second = write_json(tmp_path, "b.json", {"DB_NAME": "two"})
    config = load(first, second)
    assert (config.db_name, config.mail_port) == ("two", 25)


def test_absent_keys_take_defaults(tmp_path: Path) -> None:
    """An empty object yields the documented defaults."""
    config = load(write_json(tmp_path, "a.json", {}))
    assert config == Config()
    assert config.jfs_service_cache_len == 20
    assert config.wait_timeout == 1.0
    assert config.instance_name == "Unknown"


def test_integer_keys_truncate_floats(tmp_path: Path) -> None:
    """Integer keys accept JSON floats and drop the fraction."""
    path = write_json(
        tmp_path, "a.json", {"CONTENT_STORE_WORKERS": 9.9, "MAX_DB_CONNECTIONS": -2.5}
    )
    config = load(path)
    assert config.content_store_workers == 9
    assert config.max_db_connections == -2
    assert isinstance(config.content_store_workers, int)


def test_integer_key_rejects_bool(tmp_path: Path) -> None:
    """A boolean is not a number for an integer key."""
    path = write_json(tmp_path, "a.json", {"MAIL_PORT": True})
    with pytest.raises(ConfigError, match="MAIL_PORT"):
        load(path)


def test_float_key_accepts_integer(tmp_path: Path) -> None:
    """A float key accepts a JSON integer."""
    path = write_json(tmp_path, "a.json", {"MIN_TIME_BETWEEN_EMAIL_NOTIFS_IN_MINS": 1})
    config = load(path)
    assert config.min_time_between_email_notifs_in_mins == 1.0


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("DB_HOST", 3306),
        ("DB_NAME", None),
        ("INSTANCE_NAME", ["x"]),
        ("DISABLE_SO_KEEP_ALIVE", "true"),
        ("DISABLE_SO_KEEP_ALIVE", 1),
        ("MAIL_PORT", "25"),
        ("JFS_MAPPING", {"PING": 1}),
        ("JFS_MAPPING", ["PING"]),
        ("JFS_MONGO_URL", 27017),
        ("ERROR_NOTIFICATION_RECIPIENTS", ["a@b", 3]),
    ],
)
def test_wrong_type_names_file_and_key(tmp_path: Path, key: str, value: Any) -> None:
    """A value of the wrong JSON type raises ConfigError naming the file and key."""
    path = write_json(tmp_path, "site.json", {key: value})
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert key in str(info.value)


def test_invalid_json_names_file(tmp_path: Path) -> None:
    """A file that is not JSON raises ConfigError naming the file."""
    path = tmp_path / "broken.json"
    path.write_text('{"DB_NAME": "x",}', encoding="utf-8")
    with pytest.raises(ConfigError, match="invalid JSON") as info:
        load(path)
    assert str(path) in str(info.value)


def test_top_level_array_is_rejected(tmp_path: Path) -> None:
    """A file whose top level is not an object raises ConfigError naming it."""
    path = write_json(tmp_path, "list.json", [1, 2])
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_missing_file_names_file(tmp_path: Path) -> None:
    """A file that does not exist raises ConfigError naming the file."""
    path = tmp_path / "absent.json"
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)


def test_empty_path_list_is_an_error() -> None:
    """Loading no file at all raises ConfigError."""
    with pytest.raises(ConfigError, match="no configuration file"):
        Config.load([], environ={})


def test_unknown_db_driver_is_an_error(tmp_path: Path) -> None:
    """A DB_DRIVER other than mysql or sqlite raises ConfigError naming the key."""
    path = write_json(tmp_path, "a.json", {"DB_DRIVER": "postgres"})
    with pytest.raises(ConfigError, match="DB_DRIVER") as info:
        load(path)
    assert "postgres" in str(info.value)


def test_unsupported_store_url_is_an_error(tmp_path: Path) -> None:
    """A CONTENT_STORE_URL with an unknown scheme raises ConfigError."""
    path = write_json(tmp_path, "a.json", {"CONTENT_STORE_URL": "ftp://x/y"})
    with pytest.raises(ConfigError, match="CONTENT_STORE_URL"):
        load(path)


def test_environment_string_key_is_verbatim(tmp_path: Path) -> None:
    """A string key from the environment is taken as is, not parsed as JSON."""
    path = write_json(tmp_path, "a.json", {"DB_NAME": "file", "DB_PASSWORD": "x"})
    config = load(
        path,
        environ={"IMAGECATCHER_DB_NAME": "from env", "IMAGECATCHER_DB_PASSWORD": '"1"'},
    )
    assert config.db_name == "from env"
    assert config.db_password == '"1"'


def test_environment_typed_keys_are_json(tmp_path: Path) -> None:
    """Integer, boolean, map and list keys from the environment are read as JSON."""
    path = write_json(tmp_path, "a.json", {"MAIL_PORT": 25, "JFS_MAPPING": {"A": "B"}})
    config = load(
        path,
        environ={
            "IMAGECATCHER_MAIL_PORT": "587",
            "IMAGECATCHER_DISABLE_SO_KEEP_ALIVE": "true",
            "IMAGECATCHER_JFS_MAPPING": '{"PING": "P"}',
            "IMAGECATCHER_JFS_MONGO_URL": '["h1:1", "h2:2"]',
            "IMAGECATCHER_WAIT_TIMEOUT": "250ms",
        },
    )
    assert config.mail_port == 587
    assert config.disable_so_keep_alive is True
    assert dict(config.jfs_mapping) == {"PING": "P"}
    assert config.jfs_mongo_url == ("h1:1", "h2:2")
    assert config.wait_timeout == pytest.approx(0.25)


def test_environment_bad_value_names_variable(tmp_path: Path) -> None:
    """A malformed environment value raises ConfigError naming the variable."""
    path = write_json(tmp_path, "a.json", {})
    with pytest.raises(ConfigError, match="IMAGECATCHER_MAIL_PORT"):
        load(path, environ={"IMAGECATCHER_MAIL_PORT": "twenty-five"})


def test_environment_ignores_unrelated_variables(tmp_path: Path) -> None:
    """Variables without the prefix or naming no key change nothing."""
    path = write_json(tmp_path, "a.json", {})
    config = load(path, environ={"DB_NAME": "x", "IMAGECATCHER_NOT_A_KEY": "y"})
    assert config == Config()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("h:1", ("h:1",)), (["a:1", "b:2"], ("a:1", "b:2")), ([], ())],
)
def test_list_key_accepts_string_or_array(
    tmp_path: Path, value: Any, expected: tuple[str, ...]
) -> None:
    """A list key accepts one string or an array of strings."""
    path = write_json(tmp_path, "a.json", {"JFS_MONGO_URL": value})
    assert load(path).jfs_mongo_url == expected


def test_unknown_keys_are_collected(tmp_path: Path) -> None:
    """Unknown keys are listed, sorted; known-unused keys are silently ignored."""
    path = write_json(
        tmp_path,
        "a.json",
        {
            "ZZ_NEW": 1,
            "AA_OLD": "x",
            "IMAGE_LAB_DRIVES_MAP": {"a": "b"},
            "LOG_MAX_AGE": 7,
        },
    )
    assert load(path).unknown_keys == ("AA_OLD", "ZZ_NEW")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("0", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Go duration strings are read as seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1", "s", "1x", "1s2", "one second", "-1s"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    """A string that is not a Go duration raises ValueError."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_bad_duration_in_file_names_key(tmp_path: Path) -> None:
    """A malformed WAIT_TIMEOUT raises ConfigError naming the file and key."""
    path = write_json(tmp_path, "a.json", {"WAIT_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="WAIT_TIMEOUT") as info:
        load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        (":5001", "tcp6:5001"),
        ("127.0.0.1:5001", "tcp:5001:interface=127.0.0.1"),
        ("0.0.0.0:5001", "tcp:5001:interface=0.0.0.0"),
        ("tcp:5001:interface=127.0.0.1", "tcp:5001:interface=127.0.0.1"),
        ("tcp:5001", "tcp:5001"),
        ("tcp6:5001", "tcp6:5001"),
        ("unix:/x", "unix:/x"),
        ("[::1]:5001", r"tcp6:5001:interface=\:\:1"),
    ],
)
def test_to_endpoint(address: str, endpoint: str) -> None:
    """Old host:port addresses become endpoint strings; endpoints pass through."""
    assert to_endpoint(address) == endpoint


def test_load_converts_listen_addresses(tmp_path: Path) -> None:
    """The http and tcp arguments are stored as endpoint strings."""
    path = write_json(tmp_path, "a.json", {})
    config = Config.load([path], http=":5001", tcp="127.0.0.1:5002", environ={})
    assert config.http_endpoint == "tcp6:5001"
    assert config.tcp_endpoint == "tcp:5002:interface=127.0.0.1"


@pytest.mark.parametrize(
    ("db_host", "host", "port"),
    [
        ("db.example:3307", "db.example", 3307),
        ("db.example", "db.example", 3306),
        ("", "localhost", 3306),
        ("[::1]:3308", "::1", 3308),
    ],
)
def test_mysql_args_split_host(db_host: str, host: str, port: int) -> None:
    """DB_HOST is split into pymysql host and port, 3306 by default."""
    config = Config(db_host=db_host, db_user="u", db_password="p", db_name="d")
    assert config.mysql_args() == {
        "host": host,
        "port": port,
        "user": "u",
        "password": "p",
        "database": "d",
    }


def test_shipped_config_loads() -> None:
    """The shipped config.json loads cleanly and selects SQLite."""
    config = Config.load([SHIPPED_CONFIG], environ={})
    assert config.db_driver == "sqlite"
    assert config.unknown_keys == ()
    assert config.content_store_workers == 9


def test_every_schema_key_is_a_field() -> None:
    """Each key of the schema has a Config field named after it in lower case."""
    fields = {field.name for field in attrs.fields(Config)}
    missing = [key for key in config_module._SCHEMA if key.lower() not in fields]
    assert missing == []


def test_preview_keys_default_and_validate(tmp_path: Path) -> None:
    """PREVIEW_WORKERS defaults to 1 and must be 1 or more; PREVIEW_CACHE_BYTES
    defaults to 64 MiB and may be 0 but not negative."""
    defaults = load(write_json(tmp_path, "empty.json", {}))
    assert defaults.preview_workers == 1
    assert defaults.preview_cache_bytes == 64 * 1024 * 1024
    set_ = load(
        write_json(
            tmp_path, "set.json", {"PREVIEW_WORKERS": 2, "PREVIEW_CACHE_BYTES": 0}
        )
    )
    assert (set_.preview_workers, set_.preview_cache_bytes) == (2, 0)
    for key, value in (("PREVIEW_WORKERS", 0), ("PREVIEW_CACHE_BYTES", -1)):
        with pytest.raises(ConfigError) as info:
            load(write_json(tmp_path, "bad.json", {key: value}))
        assert key in str(info.value)
