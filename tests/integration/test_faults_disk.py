"""Faults of the disk: a full spool or file store, and a spool damaged while down.

The full-disk tests mount a small tmpfs (so they need root, as CI has) and
point ``SPOOL_DIR`` or the file store at it: tiles are refused before the
disk fills (HTTP 507 naming the directory and its free bytes, TCP status 1
with system status RED), ``ping`` answers 500 while it lasts, and capture
resumes by itself once there is room again.  The damaged-spool test corrupts
spooled tiles while the daemon is stopped: they are set aside, never
uploaded, and everything else is.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from imagecatcher.config import Config
from tests.integration.daemon import http_get, ports, run_tool, write_config
from tests.integration.faults import (
    Daemon,
    FakeStore,
    Ledger,
    Outcome,
    Stream,
    Tile,
    assert_exactly_stored,
    content_rows,
    link_states,
    roi_cells,
    spool_leftovers,
    wait_for,
)
from tests.integration.httpclient import request, start_fixture_acquisition

MiB = 1024 * 1024
MIN_FREE = 2 * MiB


@contextmanager
def small_disk(mountpoint: Path, size: str = "24m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``mountpoint`` for the ``with`` block."""
    if os.geteuid() != 0:
        pytest.fail(
            "the full-disk fault tests mount a tmpfs and must run as root"
            " (CI does); run them with sudo"
        )
    mountpoint.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        check=True,
    )
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def _free(path: Path) -> int:
    vfs = os.statvfs(path)
    return vfs.f_bavail * vfs.f_frsize


def _send(daemon: Daemon, channel: str, tile: Tile, ledger: Ledger) -> Outcome:
    """Send one tile and return what it was answered."""
    stream = Stream(channel, daemon, [tile], ledger, threading.Event())
    stream.start()
    stream.finish()
    return ledger.outcomes[-1]


def _assert_refused_for_room(outcome: Outcome, directory: Path) -> None:
    """HTTP 507 naming the directory and its free bytes; TCP status 1, RED."""
    assert outcome.kind == "refused", outcome
    if outcome.channel == "tcp":
        assert (outcome.detail.status, outcome.detail.system_status) == (1, 2)
    else:
        status, body = outcome.detail
        assert status == 507, outcome
        assert str(directory) in body["errormessage"], body
        assert "bytes free" in body["errormessage"], body


def _fill_until_refused(
    daemon: Daemon, ledger: Ledger, tiles: Iterator[Tile], limit: int = 40
) -> list[Outcome]:
    """Send tiles, TCP and HTTP in turn, until one is refused; then one more on
    the other channel; the refusals."""
    for i in range(limit):
        channel = ("tcp", "http")[i % 2]
        outcome = _send(daemon, channel, next(tiles), ledger)
        if outcome.kind != "acked":
            other = "http" if channel == "tcp" else "tcp"
            return [outcome, _send(daemon, other, next(tiles), ledger)]
    raise AssertionError(f"no tile refused after {limit}")


def _tiles(cells: list[tuple[int, int]], size: int) -> Iterator[Tile]:
    for col, row in cells:
        yield Tile(col, row, os.urandom(size))


def _resend_refused(daemon: Daemon, ledger: Ledger) -> None:
    """Send every refused tile again (as a rig does); each must be acknowledged."""
    for o in ledger.of("refused"):
        if o.tile.name not in ledger.acked:
            outcome = _send(daemon, o.channel, o.tile, ledger)
            assert outcome.kind == "acked", outcome


def _ping(daemon: Daemon) -> tuple[int, str]:
    status, _, body = http_get(daemon.http_port, "/service/v1/ping")
    return status, body.decode()


def test_full_spool_refuses_tiles_until_the_store_drains_it(
    tmp_path: Path, engine_config: Config
) -> None:
    """A remote store down and SPOOL_DIR on a 24 MiB disk: tiles are spooled
    until the disk would pass SPOOL_MIN_FREE_BYTES, then refused (507 / status 1
    RED) while ping answers 500; when the store is back the spool drains,
    capture resumes by itself, and exactly the acknowledged tiles are stored."""
    fake = FakeStore(ports()[0], tmp_path)
    http_port, tcp_port = ports()
    with small_disk(tmp_path / "disk") as disk:
        spool = disk / "spool"
        cfg = write_config(
            tmp_path,
            engine_config,
            JFS_MAPPING={"PING": "FAFB"},
            CONTENT_STORE_URL=fake.url,
            SPOOL_DIR=str(spool),
            SPOOL_MIN_FREE_BYTES=MIN_FREE,
        )
        assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
        daemon = Daemon(cfg, tmp_path, http_port, tcp_port)
        ledger = Ledger()
        tiles = _tiles(roi_cells(), MiB + 4321)
        with daemon.running():
            with fake:
                start_fixture_acquisition(http_port)
            refusals = _fill_until_refused(daemon, ledger, tiles)
            for outcome in refusals:
                _assert_refused_for_room(outcome, disk)
            assert len(ledger.acked) >= 15, len(ledger.acked)
            assert _free(disk) >= MIN_FREE
            status, text = _ping(daemon)
            assert status == 500, text
            refused = {o.tile.name for o in ledger.of("refused")}
            assert not refused & {
                name for name, *_ in content_rows(engine_config).values()
            }
            with fake:
                wait_for("the spool to drain", lambda: not spool_leftovers(spool), 60)
                wait_for("ping 200", lambda: _ping(daemon)[0] == 200)
                # The daemon looks at the disk every second; its last look
                # may have been before the last uploads.
                time.sleep(1.5)
                _resend_refused(daemon, ledger)
                assert _send(daemon, "tcp", next(tiles), ledger).kind == "acked"
                assert _send(daemon, "http", next(tiles), ledger).kind == "acked"
                wait_for("the spool to drain", lambda: not spool_leftovers(spool))
                wait_for(
                    "every tile uploaded",
                    lambda: all(
                        k for _, _, k, _ in content_rows(engine_config).values()
                    ),
                )
                assert_exactly_stored(
                    http_port, engine_config, ledger.acked, spool=spool, fake=fake
                )
        log = daemon.log_text()
        assert "refusing tiles:" in log and "content store down" in log


def _file_store_daemon(tmp_path: Path, config: Config, store: Path) -> Daemon:
    cfg = write_config(
        tmp_path,
        config,
        JFS_MAPPING={"PING": "FAFB"},
        CONTENT_STORE_URL=f"file://{store}",
        SPOOL_MIN_FREE_BYTES=MIN_FREE,
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    return Daemon(cfg, tmp_path, *ports())


def test_full_file_store_disk_refuses_tiles_until_room_returns(
    tmp_path: Path, engine_config: Config
) -> None:
    """The file store's 24 MiB disk filled by someone else's file: every tile
    is refused (507 / status 1 RED) while ping answers 500, and once the file
    is gone capture resumes by itself; exactly the acknowledged tiles are stored."""
    with small_disk(tmp_path / "disk") as disk:
        store = disk / "objects"
        daemon = _file_store_daemon(tmp_path, engine_config, store)
        ledger = Ledger()
        tiles = _tiles(roi_cells(), MiB + 4321)
        ballast = disk / "ballast"
        with daemon.running():
            start_fixture_acquisition(daemon.http_port)
            for channel in ("tcp", "http"):
                assert _send(daemon, channel, next(tiles), ledger).kind == "acked"
            # Logs, a copy, another program: 1 MiB stays free.
            ballast.write_bytes(b"\0" * (_free(disk) - MiB))
            wait_for(
                "ping to say that capture is refusing tiles",
                lambda: "Capture is refusing tiles" in _ping(daemon)[1],
            )
            assert _ping(daemon)[0] == 500
            for channel in ("tcp", "http", "tcp", "http"):
                outcome = _send(daemon, channel, next(tiles), ledger)
                _assert_refused_for_room(outcome, disk)
            assert not list((store / ".incoming").iterdir())
            ballast.unlink()
            wait_for("ping 200", lambda: _ping(daemon)[0] == 200)
            _resend_refused(daemon, ledger)
            assert _send(daemon, "tcp", next(tiles), ledger).kind == "acked"
            assert _send(daemon, "http", next(tiles), ledger).kind == "acked"
            assert_exactly_stored(
                daemon.http_port,
                engine_config,
                ledger.acked,
                store_root=store,
                spool=tmp_path / "spool",
            )
        log = daemon.log_text()
        assert "refusing tiles:" in log and "bytes free" in log


def test_own_tiles_never_take_the_file_store_disk_below_the_minimum(
    tmp_path: Path, engine_config: Config
) -> None:
    """Tiles sent back to back to a file store with 6 MiB free are refused
    before the disk has less than SPOOL_MIN_FREE_BYTES left."""
    with small_disk(tmp_path / "disk") as disk:
        daemon = _file_store_daemon(tmp_path, engine_config, disk / "objects")
        ledger = Ledger()
        tiles = _tiles(roi_cells(), MiB + 4321)
        with daemon.running():
            start_fixture_acquisition(daemon.http_port)
            (disk / "ballast").write_bytes(b"\0" * (_free(disk) - MIN_FREE - 4 * MiB))
            wait_for("a look at the disk", lambda: _ping(daemon)[0] == 200)
            time.sleep(1.2)
            refusals = _fill_until_refused(daemon, ledger, tiles)
            for outcome in refusals:
                _assert_refused_for_room(outcome, disk)
            assert _free(disk) >= MIN_FREE, (_free(disk), len(ledger.acked))


def test_spool_damaged_while_the_daemon_is_down_is_set_aside(
    tmp_path: Path, engine_config: Config
) -> None:
    """Spooled tiles truncated or bit-flipped, and one whose metadata is cut,
    while the daemon is stopped are set aside as *.bad and never uploaded,
    their tiles stay not READY with jfs_key ''; every other one is uploaded
    and verified."""
    fake = FakeStore(ports()[0], tmp_path)
    spool = tmp_path / "spool"
    cfg = write_config(
        tmp_path,
        engine_config,
        JFS_MAPPING={"PING": "FAFB"},
        CONTENT_STORE_URL=fake.url,
    )
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    daemon = Daemon(cfg, tmp_path, *ports())
    ledger = Ledger()
    tiles = _tiles(roi_cells(), 200_000)
    with daemon.running():
        with fake:
            start_fixture_acquisition(daemon.http_port)
        for i in range(8):  # the store is down: every tile waits in the spool
            assert (
                _send(daemon, ("tcp", "http")[i % 2], next(tiles), ledger).kind
                == "acked"
            )
    by_id = {tile_id: tile for tile_id, tile in ledger.acked.values()}
    stems = {tile_id: f"{tile_id}-{tile.sha1.hex()}" for tile_id, tile in by_id.items()}
    assert sorted(p.name for p in spool.glob("*.tile")) == sorted(
        f"{s}.tile" for s in stems.values()
    )
    truncated, flipped, cut, *_ = sorted(by_id)
    with open(spool / f"{stems[truncated]}.tile", "r+b") as f:
        f.truncate(len(by_id[truncated].data) // 2)
    with open(spool / f"{stems[flipped]}.tile", "r+b") as f:
        f.seek(100_000)
        middle = f.read(16)
        f.seek(100_000)
        f.write(bytes(b ^ 0xFF for b in middle))
    meta = spool / f"{stems[cut]}.json"
    meta.write_bytes(meta.read_bytes()[:40])
    damaged = {truncated, flipped, cut}
    with fake, daemon.running():
        wait_for("the spool to drain", lambda: not spool_leftovers(spool))
        assert sorted(p.name for p in spool.iterdir() if p.is_file()) == sorted(
            f"{stems[i]}{suffix}.bad" for i in damaged for suffix in (".json", ".tile")
        )
        assert (spool / f"{stems[cut]}.tile.bad").read_bytes() == by_id[cut].data
        good = {
            name: (tile_id, tile)
            for name, (tile_id, tile) in ledger.acked.items()
            if tile_id not in damaged
        }
        wait_for(
            "every other tile uploaded",
            lambda: all(
                content_rows(engine_config)[tile_id][2] for tile_id, _ in good.values()
            ),
        )
        assert_exactly_stored(
            daemon.http_port,
            engine_config,
            good,
            spool=spool,
            fake=fake,
            unstored={i: by_id[i] for i in damaged},
        )
        held = {o["sha1"] for o in fake.objects().values()}
        for tile_id in damaged:
            assert by_id[tile_id].sha1.hex() not in held
            assert "READY" not in link_states(engine_config).get(tile_id, set())
            status, _, _ = request(
                daemon.http_port, "GET", f"/service/v1/tile/{tile_id}/content"
            )
            assert status == 404
    log = daemon.log_text()
    assert log.count("is damaged; set aside") == 2
    assert f"Spool entry {spool / stems[cut]}.json is damaged" in log
