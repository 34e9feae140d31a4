"""The daemon as a user runs it: twistd plugin, old command line, ping, config errors."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from imagecatcher.config import Config
from imagecatcher.protocol import PREFIX, decode_response, encode_request, frame
from tests.integration.daemon import (
    http_get,
    ports,
    run_tool,
    running,
    script,
    twistd_argv,
    write_config,
)


def _init(tmp_path: Path, engine_config: Config, **extra: object) -> Path:
    cfg = write_config(tmp_path, engine_config, **extra)
    result = run_tool(["--config", str(cfg), "db-init"], tmp_path)
    assert result.returncode == 0, result.stderr
    return cfg


def _read_response(sock: socket.socket) -> bytes:
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "connection closed"
            data += chunk
        return data

    (length,) = PREFIX.unpack(exactly(PREFIX.size))
    return exactly(length)


def test_ping_reports_queue_headers(tmp_path: Path, engine_config: Config) -> None:
    """Ping answers 200, empty, with the three queue headers under their spaced names."""
    cfg = _init(tmp_path, engine_config)
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        status, headers, body = http_get(http_port, "/service/v1/ping")
    assert status == 200 and body == b""
    names = dict(headers)
    for name in ("System Status", "Tile Queue Status", "Content Queue Status"):
        assert names[name] == "GREEN"
    assert names["System-Status"] == "GREEN"


def test_ping_fails_when_the_store_is_broken(
    tmp_path: Path, engine_config: Config
) -> None:
    """Ping answers 500 in plain text when the store cannot write its probe."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"x")
    cfg = _init(tmp_path, engine_config, CONTENT_STORE_URL=f"file://{blocker}/objects")
    http_port, _ = ports()
    argv = twistd_argv(cfg, http_port, None)
    proc = subprocess.Popen(
        argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                status, headers, body = http_get(http_port, "/service/v1/ping")
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        assert status == 500
        assert dict(headers)["Content-Type"].startswith("text/plain")
        assert body.endswith(b"\n") and b"Store check failed" in body
        assert "System Status" not in dict(headers)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_unknown_route_is_404(tmp_path: Path, engine_config: Config) -> None:
    """An unknown path answers 404 with a plain-text body."""
    cfg = _init(tmp_path, engine_config)
    http_port, _ = ports()
    with running(twistd_argv(cfg, http_port, None), tmp_path, http_port):
        status, _, body = http_get(http_port, "/service/v1/nothing-here")
    assert status == 404 and body == b"404 page not found\n"


def test_tcp_garbage_frame_gets_status_1(tmp_path: Path, engine_config: Config) -> None:
    """A garbage frame is answered with status 1 and the connection stays usable."""
    cfg = _init(tmp_path, engine_config)
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port):
        with socket.create_connection(("127.0.0.1", tcp_port), timeout=10) as s:
            s.sendall(frame(b"\xff" * 3))
            assert decode_response(_read_response(s)).status == 1
            request = encode_request(123, 0, -1, 1, 2, b"0" * 16, b"tile")
            s.sendall(frame(request))
            response = decode_response(_read_response(s))
            assert response.status == 1 and response.acq_id == 123


def test_sigterm_stops_the_daemon(tmp_path: Path, engine_config: Config) -> None:
    """SIGTERM shuts the daemon down cleanly (twistd re-raises the signal at exit)."""
    cfg = _init(tmp_path, engine_config)
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), tmp_path, http_port) as proc:
        proc.terminate()
        assert proc.wait(timeout=20) in (0, -signal.SIGTERM)
    assert "Main loop terminated" in (tmp_path / "daemon.log").read_text()


def test_old_command_line(tmp_path: Path, engine_config: Config) -> None:
    """The old -config/-httpserver/-tcpserver/-logtostderr command line still works."""
    cfg = _init(tmp_path, engine_config)
    http_port, tcp_port = ports()
    argv = [
        script("imagecatcher"),
        "-config",
        f"{cfg}, {cfg}",
        "-httpserver",
        f"127.0.0.1:{http_port}",
        "-tcpserver",
        f"127.0.0.1:{tcp_port}",
        "-logtostderr",
    ]
    with running(argv, tmp_path, http_port):
        assert http_get(http_port, "/service/v1/ping")[0] == 200


def test_old_command_line_requires_config(tmp_path: Path) -> None:
    """Without -config the old command line prints its help and exits 1."""
    result = subprocess.run(
        [script("imagecatcher")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1 and "-config" in result.stderr


def test_bad_config_value_names_the_key(tmp_path: Path) -> None:
    """A wrongly typed key stops start-up with a message naming file and key."""
    cfg = tmp_path / "bad.json"
    cfg.write_text('{"DB_DRIVER": "sqlite", "WAIT_TIMEOUT": 5}')
    http_port, _ = ports()
    result = subprocess.run(
        twistd_argv(cfg, http_port, None),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "WAIT_TIMEOUT" in result.stderr + result.stdout
    assert str(cfg) in result.stderr + result.stdout


def test_invalid_json_and_unknown_driver(tmp_path: Path) -> None:
    """Invalid JSON and an unknown DB_DRIVER both exit non-zero with a clear message."""
    http_port, _ = ports()
    bad_json = tmp_path / "a.json"
    bad_json.write_text('{"DB_DRIVER": "sqlite",}')
    driver = tmp_path / "b.json"
    driver.write_text('{"DB_DRIVER": "oracle"}')
    for cfg, expected in ((bad_json, "invalid JSON"), (driver, "DB_DRIVER")):
        result = subprocess.run(
            twistd_argv(cfg, http_port, None),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0
        assert expected in result.stderr + result.stdout


def test_unreachable_database_stops_before_binding(tmp_path: Path) -> None:
    """An unreachable MySQL stops start-up with a message, and no port is bound."""
    http_port, db_port = ports()
    cfg = tmp_path / "c.json"
    cfg.write_text(
        f'{{"DB_DRIVER": "mysql", "DB_HOST": "127.0.0.1:{db_port}", "DB_NAME": "x"}}'
    )
    result = subprocess.run(
        twistd_argv(cfg, http_port, None),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "cannot connect to MySQL" in result.stderr + result.stdout
    with socket.socket() as s:
        s.bind(("127.0.0.1", http_port))  # still free


def test_missing_sqlite_database_says_how_to_create_it(tmp_path: Path) -> None:
    """A missing SQLite file stops start-up and names db-init."""
    cfg = tmp_path / "d.json"
    cfg.write_text(
        f'{{"DB_DRIVER": "sqlite", "SQLITE_PATH": "{tmp_path / "no.sqlite"}"}}'
    )
    result = subprocess.run(
        twistd_argv(cfg, None, None),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "db-init" in result.stderr + result.stdout


def test_twistd_lists_and_documents_the_plugin(tmp_path: Path) -> None:
    """twistd --help lists imagecatcher and its --help documents every option."""
    listing = subprocess.run(
        [script("twistd"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "imagecatcher" in listing.stdout
    helptext = subprocess.run(
        [script("twistd"), "-n", "imagecatcher", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    for option in ("--config", "--httpserver", "--tcpserver"):
        assert option in helptext.stdout
