"""The frozen service configuration, read from merged JSON files (CONTRACT §10.1).

Files are read in order and merged shallowly: a top-level key of a later file
replaces the earlier value whole.  Then any ``IMAGECATCHER_<KEY>`` environment
variable replaces that key.  Every value is type-checked here, so the rest of
the code only sees a :class:`Config` whose fields have their declared types.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from imagecatcher.clients import Network, parse_networks
from imagecatcher.tokens import TokenTable, parse_api_tokens

ENV_PREFIX = "IMAGECATCHER_"


class ConfigError(ValueError):
    """A configuration file, key or value is invalid; the message names it."""


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {json.dumps(value)}")
    return value


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {json.dumps(value)}")
    return value


def _as_int(value: Any) -> int:
    # §10.1: integer keys accept any JSON number, fractions truncated.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {json.dumps(value)}")
    if not math.isfinite(value):
        raise TypeError(f"expected a finite number, got {value}")
    return int(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {json.dumps(value)}")
    return float(value)


def _as_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(v, str) for v in value.values()
    ):
        raise TypeError(f"expected an object of strings, got {json.dumps(value)}")
    return dict(value)


def _as_list(value: Any) -> tuple[str, ...]:
    # §10.1: list keys accept a string or an array of strings.
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(
        f"expected a string or an array of strings, got {json.dumps(value)}"
    )


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> float:
    """Read a Go duration string (``1s``, ``500ms``, ``1m30s``) as seconds."""
    if text in ("0", ""):
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        m = _DURATION_PART.match(text, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r} (e.g. 1s, 500ms, 1m30s)")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return total


def _as_duration(value: Any) -> float:
    return parse_duration(_as_str(value))


def _as_count(value: Any) -> int:
    count = _as_int(value)
    if count < 0:
        raise ValueError(f"expected 0 or more, got {count}")
    return count


def _as_positive(value: Any) -> int:
    count = _as_int(value)
    if count < 1:
        raise ValueError(f"expected 1 or more, got {count}")
    return count


def _as_seconds(value: Any) -> float:
    seconds = _as_float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"expected a finite number of seconds, 0 or more, got {value}")
    return seconds


def _as_driver(value: Any) -> str:
    driver = _as_str(value)
    if driver not in ("mysql", "sqlite"):
        raise ValueError(f'unknown driver {driver!r} (expected "mysql" or "sqlite")')
    return driver


def _as_ack_when(value: Any) -> str:
    when = _as_str(value)
    if when not in ("spooled", "stored"):
        raise ValueError(f'unknown value {when!r} (expected "spooled" or "stored")')
    return when


def _as_store_url(value: Any) -> str:
    url = _as_str(value)
    if not re.match(r"(file|sproxyd|s3):", url):
        raise ValueError(
            f"unsupported store URL {url!r} (expected file:, sproxyd:// or s3://)"
        )
    return url


def _as_networks(value: Any) -> tuple[Network, ...]:
    return parse_networks(_as_list(value))


def _as_endpoint(value: Any) -> str:
    # An endpoint string, or the old ":9100" / "host:9100" form; "" = none.
    text = _as_str(value).strip()
    return to_endpoint(text) if text else ""


_Kind = Callable[[Any], Any]

#: Every key the daemon reads, with its coercion.  The Config field of a key is
#: its lower-case name.  Keys that are read but unused are listed in _IGNORED.
_SCHEMA: dict[str, _Kind] = {
    "DB_DRIVER": _as_driver,
    "DB_HOST": _as_str,
    "DB_NAME": _as_str,
    "DB_USER": _as_str,
    "DB_PASSWORD": _as_str,
    "SQLITE_PATH": _as_str,
    "MAX_DB_CONNECTIONS": _as_int,
    "CONTENT_STORE_URL": _as_store_url,
    "S3_ENDPOINT_URL": _as_str,
    "S3_ACCESS_KEY_ID": _as_str,
    "S3_SECRET_ACCESS_KEY": _as_str,
    "S3_REGION": _as_str,
    "SPOOL_DIR": _as_str,
    "ACK_WHEN": _as_ack_when,
    "SPOOL_MAX_BYTES": _as_count,
    "SPOOL_MIN_FREE_BYTES": _as_count,
    "UPLOAD_MAX_BYTES_PER_SECOND": _as_count,
    "CAPTURE_LATENCY_TARGET_MS": _as_count,
    "MAX_TILE_BYTES": _as_int,
    "TCP_IDLE_TIMEOUT": _as_int,
    "TCP_MAX_CONNECTIONS": _as_count,
    "TCP_ALLOWED_CLIENTS": _as_networks,
    "API_TOKENS": parse_api_tokens,
    "READ_REQUIRES_TOKEN": _as_bool,
    "HTTP_MAX_CONNECTIONS": _as_count,
    "HTTP_BODY_TIMEOUT": _as_seconds,
    "HTTP_BODY_MIN_RATE": _as_count,
    "TILE_LEASE_SECONDS": _as_float,
    "PREVIEW_WORKERS": _as_positive,
    "PREVIEW_CACHE_BYTES": _as_count,
    "JFS_MONGO_URL": _as_list,
    "JFS_MONGO_USER": _as_str,
    "JFS_MONGO_PASSWORD": _as_str,
    "SCALITY_RINGS_MAPPING": _as_map,
    "SCALITY_HOST": _as_str,
    "JFS_MAPPING": _as_map,
    "JFS_SERVICE_CACHE_LEN": _as_int,
    "TMP_DATA_DIR": _as_str,
    "TILE_PROCESSING_WORKERS": _as_int,
    "TILE_PROCESSING_QUEUE_SIZE": _as_int,
    "CONTENT_STORE_WORKERS": _as_int,
    "CONTENT_STORE_QUEUE_SIZE": _as_int,
    "CONTENT_RESULT_BUFFER_SIZE": _as_int,
    "WAIT_TIMEOUT": _as_duration,
    "TILES_URL_BASE": _as_str,
    "SO_RECEIVE_BUFSIZE": _as_int,
    "SO_REUSEPORT": _as_bool,
    "WORKERS": _as_count,
    "DISABLE_SO_KEEP_ALIVE": _as_bool,
    "LOG_LEVEL": _as_int,
    "LOG_MAX_SIZE": _as_int,
    "MAIL_SERVER": _as_str,
    "MAIL_PORT": _as_int,
    "MAIL_SENDER": _as_str,
    "MAIL_USERNAME": _as_str,
    "MAIL_PASSWORD": _as_str,
    "ERROR_NOTIFICATION_RECIPIENTS": _as_list,
    "MIN_TIME_BETWEEN_EMAIL_NOTIFS_IN_MINS": _as_float,
    "INSTANCE_NAME": _as_str,
    "METRICS_ENDPOINT": _as_endpoint,
}

#: Keys of the old shipped file that the daemon accepts and does not use.
_IGNORED = frozenset({"IMAGE_LAB_DRIVES_MAP", "LOG_MAX_AGE"})


@attrs.frozen
class Config:
    """The validated configuration; field names are the keys in snake_case."""

    db_driver: str = "mysql"
    db_host: str = ""
    db_name: str = ""
    db_user: str = ""
    db_password: str = ""
    sqlite_path: str = "var/imagecatcher.sqlite"
    max_db_connections: int = 0
    content_store_url: str = "file:var/objects"
    s3_endpoint_url: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_region: str = "us-east-1"
    spool_dir: str = "var/spool"
    #: "spooled": remote-store tiles are acknowledged once durable in the
    #: spool and uploaded behind; "stored": once the store has them.
    ack_when: str = "spooled"
    #: Bytes the spool may hold (0: no limit but the free space).
    spool_max_bytes: int = 0
    #: Free bytes kept on the spool's and the file store's disks.
    spool_min_free_bytes: int = 256 * 1024 * 1024
    #: Average upload rate of spooled tiles (0: no limit).
    upload_max_bytes_per_second: int = 0
    #: Spool uploads slow down while captured tiles take longer than this
    #: (90th percentile over a second), first byte to acknowledgement; 0: off.
    capture_latency_target_ms: int = 100
    max_tile_bytes: int = 64 * 1024 * 1024
    tcp_idle_timeout: int = 300
    #: Open TCP connections per worker process; more are closed at once (0 = any).
    tcp_max_connections: int = 1000
    #: Networks whose peers may open TCP connections (empty: any peer).
    tcp_allowed_clients: tuple[Network, ...] = ()
    #: Tokens and roles of the routes that change things; None = no access control.
    api_tokens: TokenTable | None = None
    #: Whether the read routes need a token too (any configured one).
    read_requires_token: bool = False
    #: Open HTTP connections per worker process; more are closed at once (0 = any).
    http_max_connections: int = 1000
    #: Seconds of each request-body window (0 = bodies are not watched).
    http_body_timeout: float = 60.0
    #: Bytes per second a request body must average over each window.
    http_body_min_rate: int = 0
    tile_lease_seconds: float = 0.0
    #: Previews (and mosaic images) made at the same time, each in a thread.
    preview_workers: int = 1
    #: Bytes of previews and mosaic cells kept in memory (0: none kept).
    preview_cache_bytes: int = 64 * 1024 * 1024
    jfs_mongo_url: tuple[str, ...] = ()
    jfs_mongo_user: str = ""
    jfs_mongo_password: str = ""
    scality_rings_mapping: Mapping[str, str] = attrs.field(factory=dict)
    scality_host: str = "localhost"
    jfs_mapping: Mapping[str, str] = attrs.field(factory=dict)
    jfs_service_cache_len: int = 20
    tmp_data_dir: str = "/tmp"
    tile_processing_workers: int = 1
    tile_processing_queue_size: int = 1
    content_store_workers: int = 1
    content_store_queue_size: int = 1
    content_result_buffer_size: int = 0
    wait_timeout: float = 1.0
    tiles_url_base: str = ""
    so_receive_bufsize: int = 0
    so_reuseport: bool = True
    #: Worker processes sharing the ports; 0 = one per CPU (see workers.py).
    workers: int = 1
    disable_so_keep_alive: bool = False
    log_level: int = 0
    log_max_size: int = 0
    mail_server: str = ""
    mail_port: int = 0
    mail_sender: str = ""
    mail_username: str = ""
    mail_password: str = ""
    error_notification_recipients: tuple[str, ...] = ()
    min_time_between_email_notifs_in_mins: float = 10.0
    instance_name: str = "Unknown"
    #: A second listener serving only GET /metrics ("" = none: /metrics is
    #: on the HTTP port only).
    metrics_endpoint: str = ""
    # Not configuration keys: the listen endpoints come from the command line.
    http_endpoint: str = ""
    tcp_endpoint: str = ""
    #: Keys found in the files that this version does not know (logged at start).
    unknown_keys: tuple[str, ...] = ()

    @classmethod
    def load(
        cls,
        paths: Iterable[Path],
        *,
        http: str | None = None,
        tcp: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Read, merge and validate configuration files; raise ConfigError."""
        paths = list(paths)
        if not paths:
            raise ConfigError("no configuration file given (--config is required)")
        merged: dict[str, tuple[Any, str]] = {}
        for path in paths:
            for key, value in _read_file(path).items():
                merged[key] = (value, str(path))
        env = os.environ if environ is None else environ
        for name, text in env.items():
            if name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :] in _SCHEMA:
                key = name[len(ENV_PREFIX) :]
                merged[key] = (_env_value(key, text), f"environment {name}")
        values: dict[str, Any] = {}
        unknown = []
        for key, (value, origin) in merged.items():
            if key in _IGNORED:
                continue
            kind = _SCHEMA.get(key)
            if kind is None:
                unknown.append(key)
                continue
            try:
                values[key.lower()] = kind(value)
            except (TypeError, ValueError) as e:
                raise ConfigError(f"{origin}: key {key}: {e}") from None
        if values.get("read_requires_token") and values.get("api_tokens") is None:
            raise ConfigError("READ_REQUIRES_TOKEN is true but API_TOKENS is not set")
        return cls(
            **values,
            http_endpoint=to_endpoint(http) if http else "",
            tcp_endpoint=to_endpoint(tcp) if tcp else "",
            unknown_keys=tuple(sorted(unknown)),
        )

    def mysql_args(self) -> dict[str, Any]:
        """Keyword arguments for ``pymysql.connect`` from the DB_* keys."""
        host, _, port = self.db_host.rpartition(":")
        if not host:
            host, port = self.db_host or "localhost", "3306"
        return {
            "host": host.strip("[]"),
            "port": int(port or 3306),
            "user": self.db_user,
            "password": self.db_password,
            "database": self.db_name,
        }


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object at the top level")
    return data


def _env_value(key: str, text: str) -> Any:
    """String keys take the variable verbatim; the others take JSON."""
    if _SCHEMA[key] in (_as_str, _as_driver, _as_store_url, _as_duration, _as_endpoint):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # the type check names the key and the bad value


_OLD_ADDRESS = re.compile(r"^(?P<host>\[[^\]]*\]|[^:\[\]]*):(?P<port>\d+)$")


def to_endpoint(address: str) -> str:
    """Turn ``:5001`` / ``host:5001`` into a Twisted endpoint string.

    Endpoint strings (``tcp:5001:interface=127.0.0.1``, ``tcp6:5001``,
    ``unix:/path``...) are returned unchanged.  An address without a host
    binds the IPv6 wildcard, dual stack, as the old service did (§10.2).
    """
    m = _OLD_ADDRESS.match(address)
    if m is None or m.group("host").lower() in _ENDPOINT_TYPES:
        return address
    host, port = m.group("host"), m.group("port")
    if not host:
        return f"tcp6:{port}"
    if host.startswith("["):
        return f"tcp6:{port}:interface={host[1:-1].replace(':', chr(92) + ':')}"
    return f"tcp:{port}:interface={host}"


#: Endpoint types Twisted ships; ``tcp:5001`` is never read as host "tcp".
_ENDPOINT_TYPES = frozenset(
    {"tcp", "tcp6", "ssl", "unix", "systemd", "le", "lets", "onion"}
)
