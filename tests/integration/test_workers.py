"""Several worker processes: shared ports, SO_REUSEPORT, restart, drain, one log."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from imagecatcher.config import Config
from imagecatcher.protocol import decode_response, frame
from tests.integration.daemon import (
    http_get,
    ports,
    run_tool,
    running,
    twistd_argv,
    write_config,
)
from tests.integration.httpclient import (
    read_frame,
    send_tile,
    start_fixture_acquisition,
)
from tests.integration.test_durability import _roi_cells, _stored_state
from tests.integration.workerprocs import (
    alive,
    children,
    dispatching,
    owners,
    wait_for,
)


def _init(tmp_path: Path, config: Config, **extra: object) -> Path:
    cfg = write_config(tmp_path, config, JFS_MAPPING={"PING": "FAFB"}, **extra)
    result = run_tool(["--config", str(cfg), "db-init"], tmp_path)
    assert result.returncode == 0, result.stderr
    return cfg


def _workers_argv(cfg: Path, http_port: int, tcp_port: int, n: int = 2) -> list[str]:
    return [*twistd_argv(cfg, http_port, tcp_port), "--workers", str(n)]


def _both_listening(
    tmp_path: Path, parent: int, http_port: int, tcp_port: int, starts: int = 1
) -> set[int]:
    """The child pids once worker 0 listens on both ports and its child takes
    connections from it (``starts`` times since the daemon started)."""
    return dispatching(parent, (http_port, tcp_port), tmp_path / "daemon.log", starts)


@contextmanager
def _two_workers(
    tmp_path: Path, cfg: Path, http_port: int, tcp_port: int
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A two-worker daemon, yielded once both workers listen on both ports."""
    argv = _workers_argv(cfg, http_port, tcp_port)
    with running(argv, tmp_path, http_port) as proc:
        found: list[set[int]] = []

        def ready() -> bool:
            found[:] = [_both_listening(tmp_path, proc.pid, http_port, tcp_port)]
            return bool(found[0])

        wait_for("worker 1 to listen", ready, log=tmp_path / "daemon.log")
        (child,) = found[0]
        yield proc, child


def _connections(port: int, n: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]


def _wait_accepted_by_both(port: int, pids: set[int], n: int) -> None:
    """Wait until all ``n`` connections are accepted; each worker must hold some.

    A connection still in a listener's queue belongs to no process yet.
    """
    counts: list[Counter[int]] = []

    def accepted() -> bool:
        counts[:] = [owners(port, pids, listening=False)]
        return sum(counts[0].values()) >= n

    wait_for(f"{n} connections to be accepted", accepted, timeout=20)
    assert all(counts[0][pid] > 0 for pid in pids), counts[0]


def _ping_on(sock: socket.socket) -> int:
    sock.sendall(b"GET /service/v1/ping HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed"
        data += chunk
    return int(data.split(b" ", 2)[1])


def test_two_workers_share_both_ports(tmp_path: Path, mariadb_config: Config) -> None:
    """With --workers 2 both processes answer on the HTTP and TCP ports."""
    cfg = _init(tmp_path, mariadb_config)
    http_port, tcp_port = ports()
    with _two_workers(tmp_path, cfg, http_port, tcp_port) as (proc, child):
        pids = {proc.pid, child}
        held = _connections(http_port, 40)
        try:
            assert all(_ping_on(s) == 200 for s in held)
            per_worker = owners(http_port, pids, listening=False)
        finally:
            for s in held:
                s.close()
        assert per_worker[proc.pid] > 0 and per_worker[child] > 0, per_worker
        held = _connections(tcp_port, 40)
        try:
            for s in held:
                s.sendall(frame(b"\xff" * 3))
            assert all(decode_response(read_frame(s)).status == 1 for s in held)
            per_worker = owners(tcp_port, pids, listening=False)
        finally:
            for s in held:
                s.close()
        assert per_worker[proc.pid] > 0 and per_worker[child] > 0, per_worker
    log = (tmp_path / "daemon.log").read_text()
    assert "running 2 worker processes" in log
    assert "connections spread over the workers" in log
    # Both workers' access-log lines, each tagged with its worker.
    for tag in ("[w0 ", "[w1 "):
        assert any(
            tag in line and "/service/v1/ping" in line for line in log.splitlines()
        ), tag


def _served(port: int, pids: set[int], n: int) -> Counter[int]:
    """Connections on ``port`` per worker, once ``n`` are served."""
    counts: list[Counter[int]] = []

    def settled() -> bool:
        counts[:] = [owners(port, pids, listening=False)]
        return sum(counts[0].values()) == n

    wait_for(f"{n} connections to be served", settled, timeout=20)
    return counts[0]


def test_connections_are_spread_evenly(tmp_path: Path, mariadb_config: Config) -> None:
    """A rig's four camera connections, opened together, are served two by
    each worker, whatever the kernel's hash would have chosen; closed
    connections free their workers' shares for the next ones."""
    cfg = _init(tmp_path, mariadb_config)
    http_port, tcp_port = ports()
    with _two_workers(tmp_path, cfg, http_port, tcp_port) as (proc, child):
        pids = {proc.pid, child}
        for port in (tcp_port, http_port):
            held = _connections(port, 4)
            try:
                assert _served(port, pids, 4) == {proc.pid: 2, child: 2}
                for s in held[:3]:
                    s.close()
                _served(port, pids, 1)
                held[:3] = _connections(port, 3)
                assert _served(port, pids, 4) == {proc.pid: 2, child: 2}
            finally:
                for s in held:
                    s.close()
        assert http_get(http_port, "/service/v1/ping")[0] == 200


def test_sigterm_drains_every_worker(tmp_path: Path, mariadb_config: Config) -> None:
    """SIGTERM mid-stream: every process exits, every acknowledged tile is READY."""
    cfg = _init(tmp_path, mariadb_config)
    http_port, tcp_port = ports()
    acked: dict[tuple[int, int], bytes] = {}
    with _two_workers(tmp_path, cfg, http_port, tcp_port) as (proc, child):
        start_fixture_acquisition(http_port)
        cells = _roi_cells()
        lock = threading.Lock()
        conns = _connections(tcp_port, 16)
        _wait_accepted_by_both(tcp_port, {proc.pid, child}, len(conns))
        sent = threading.Semaphore(0)

        def stream(sock: socket.socket, mine: list[tuple[int, int]]) -> None:
            with sock:
                for col, row in mine:
                    data = os.urandom(300_000)
                    try:
                        reply = send_tile(
                            sock, 123, 0, -1, col, row, hashlib.md5(data).digest(), data
                        )
                    except OSError:
                        return
                    sent.release()
                    if reply.status == 0:
                        with lock:
                            acked[(col, row)] = data

        threads = [
            threading.Thread(target=stream, args=(s, cells[i :: len(conns)]))
            for i, s in enumerate(conns)
        ]
        for t in threads:
            t.start()
        for _ in range(10):
            assert sent.acquire(timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) in (0, -signal.SIGTERM)
        for t in threads:
            t.join(timeout=30)
    wait_for("worker 1 to exit", lambda: not alive(child), timeout=10)
    assert len(acked) >= 10
    state = _stored_state(mariadb_config)
    for cell, data in acked.items():
        sha1, key, link = state[cell]
        assert sha1 == hashlib.sha1(data).digest() and key and link == "READY"
    log = (tmp_path / "daemon.log").read_text()
    assert "stopping 1 worker(s)" in log and "worker 1 exited" in log
    assert "exited unexpectedly" not in log


def test_killed_worker_restarts_and_loses_nothing(
    tmp_path: Path, mariadb_config: Config
) -> None:
    """kill -9 of a worker mid-stream: it is restarted and every acked tile is stored."""
    cfg = _init(tmp_path, mariadb_config)
    http_port, tcp_port = ports()
    acked: dict[tuple[int, int], bytes] = {}
    with _two_workers(tmp_path, cfg, http_port, tcp_port) as (proc, child):
        start_fixture_acquisition(http_port)
        cells = _roi_cells()
        lock = threading.Lock()
        progress = threading.Semaphore(0)
        errors: list[BaseException] = []

        conns = _connections(tcp_port, 16)
        _wait_accepted_by_both(tcp_port, {proc.pid, child}, len(conns))

        def stream(sock: socket.socket, mine: list[tuple[int, int]]) -> None:
            try:
                for col, row in mine:
                    data = os.urandom(200_000)
                    deadline = time.monotonic() + 60
                    while True:  # a tile the killed worker never acked is re-sent
                        try:
                            reply = send_tile(
                                sock,
                                123,
                                0,
                                -1,
                                col,
                                row,
                                hashlib.md5(data).digest(),
                                data,
                            )
                            if reply.status == 0:
                                break
                        except OSError:
                            pass
                        assert time.monotonic() < deadline, "tile never acknowledged"
                        sock.close()
                        time.sleep(0.2)
                        try:
                            sock = socket.create_connection(
                                ("127.0.0.1", tcp_port), timeout=30
                            )
                        except OSError:
                            continue
                    with lock:
                        acked[(col, row)] = data
                    progress.release()
            except BaseException as e:
                errors.append(e)
            finally:
                sock.close()

        threads = [
            threading.Thread(target=stream, args=(c, cells[i :: len(conns)]))
            for i, c in enumerate(conns)
        ]
        for t in threads:
            t.start()
        for _ in range(8):
            assert progress.acquire(timeout=60)
        os.kill(child, signal.SIGKILL)
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert len(acked) == len(cells)
        found: list[set[int]] = []

        def restarted() -> bool:
            found[:] = [_both_listening(tmp_path, proc.pid, http_port, tcp_port)]
            return bool(found[0]) and child not in found[0]

        wait_for("worker 1 to come back", restarted, log=tmp_path / "daemon.log")
        assert http_get(http_port, "/service/v1/ping")[0] == 200
    state = _stored_state(mariadb_config)
    for cell, data in acked.items():
        sha1, key, link = state[cell]
        assert sha1 == hashlib.sha1(data).digest() and key and link == "READY"
    log = (tmp_path / "daemon.log").read_text()
    assert f"worker 1 (pid {child}) exited unexpectedly (signal 9)" in log
    assert "restarting worker 1 in 1.0s" in log


def test_killed_supervisor_takes_its_workers_down(
    tmp_path: Path, mariadb_config: Config
) -> None:
    """kill -9 of the twistd process: the kernel stops its worker, freeing the ports."""
    cfg = _init(tmp_path, mariadb_config)
    http_port, tcp_port = ports()
    with _two_workers(tmp_path, cfg, http_port, tcp_port) as (proc, child):
        proc.kill()
        proc.wait(timeout=10)
        wait_for("the orphaned worker to exit", lambda: not alive(child), timeout=40)
    for port in (http_port, tcp_port):
        with socket.socket() as s:
            # SO_REUSEADDR passes TIME_WAIT leftovers, not a live listener.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen()


def test_sqlite_runs_one_worker(tmp_path: Path) -> None:
    """--workers 2 on SQLite runs one process and says why."""
    db = Config(db_driver="sqlite", sqlite_path=str(tmp_path / "t.sqlite"))
    cfg = _init(tmp_path, db)
    http_port, tcp_port = ports()
    argv = _workers_argv(cfg, http_port, tcp_port)
    with running(argv, tmp_path, http_port) as proc:
        time.sleep(1)
        assert children(proc.pid) == set()
    log = (tmp_path / "daemon.log").read_text()
    assert "2 workers requested, running one: SQLite" in log


def test_several_workers_need_so_reuseport(
    tmp_path: Path, mariadb_config: Config
) -> None:
    """--workers 2 with SO_REUSEPORT false is refused before anything starts."""
    cfg = _init(tmp_path, mariadb_config, SO_REUSEPORT=False)
    http_port, tcp_port = ports()
    result = subprocess.run(
        _workers_argv(cfg, http_port, tcp_port),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "set SO_REUSEPORT to true" in result.stdout + result.stderr
