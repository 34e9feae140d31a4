"""Faults of the process: kill -9 at seeded random moments, round after round.

A TCP rig and an HTTP rig stream tiles of random sizes at once; after a
random delay (``random.Random`` with a fixed seed, so a failure can be
replayed) the daemon is SIGKILLed, wherever it is: receiving, hashing,
fsyncing, committing, uploading a spooled tile.  It is started again and the
rigs re-send what was never answered, as rigs do.  After the last round
every acknowledged tile must be stored with identical bytes and checksum,
READY and verified, and nothing else: no other tile with content, no stray
file in the store or its ``.incoming``, nothing left in the spool, no object
in the fake sproxyd with bytes that were never acknowledged.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from itertools import chain
from pathlib import Path

import pytest

from imagecatcher.config import Config
from tests.integration.daemon import ports, run_tool, write_config
from tests.integration.dbcheck import rows
from tests.integration.faults import (
    Daemon,
    FakeStore,
    Ledger,
    Stream,
    Tile,
    assert_exactly_stored,
    link_states,
    roi_cells,
    spool_leftovers,
    wait_for,
)
from tests.integration.httpclient import start_fixture_acquisition

SEED = 20261201
ROUNDS = 4


def _tiles(rng: random.Random, cells: list[tuple[int, int]]) -> Iterator[Tile]:
    for col, row in cells:
        yield Tile(col, row, rng.randbytes(rng.randint(20_000, 900_000)))


def _resend(daemon: Daemon, channel: str, tiles: list[Tile], ledger: Ledger) -> None:
    """Send ``tiles`` again, one by one, until each is acknowledged."""
    stop = threading.Event()
    stream = Stream(channel, daemon, tiles, ledger, stop)
    stream.start()
    stream.finish()
    for tile in tiles:
        assert tile.name in ledger.acked, (channel, tile, ledger.of("refused"))


def _keys_recorded(config: Config, ledger: Ledger) -> bool:
    ids = [tile_id for tile_id, _ in ledger.acked.values()]
    found = rows(
        config,
        "SELECT t.tem_camera_image_id, r.jfs_key FROM tem_camera_images t"
        " JOIN file_object_fs_replicas r ON r.file_object_id = t.file_object_id",
    )
    keys = {int(i): str(k or "") for i, k in found}
    return all(keys.get(i) for i in ids)


@pytest.mark.parametrize("store", ["file", "sproxyd"])
def test_kill_9_at_random_moments_loses_no_acknowledged_tile(
    tmp_path: Path, engine_config: Config, store: str
) -> None:
    """Four rounds of mixed TCP and HTTP streams each ended by kill -9 at a
    seeded random moment: every acknowledged tile ends up stored, identical,
    READY and verified, and nothing else does."""
    rng = random.Random(SEED)
    http_port, tcp_port = ports()
    fake = FakeStore(ports()[0], tmp_path) if store == "sproxyd" else None
    extra = {} if fake is None else {"CONTENT_STORE_URL": fake.url}
    cfg = write_config(tmp_path, engine_config, JFS_MAPPING={"PING": "FAFB"}, **extra)
    assert run_tool(["--config", str(cfg), "db-init"], tmp_path).returncode == 0
    daemon = Daemon(cfg, tmp_path, http_port, tcp_port)
    cells = roi_cells()
    rng.shuffle(cells)
    fresh = {
        "tcp": _tiles(random.Random(rng.random()), cells[0::2]),
        "http": _tiles(random.Random(rng.random()), cells[1::2]),
    }
    ledger = Ledger()
    pending: dict[str, list[Tile]] = {"tcp": [], "http": []}
    if fake is not None:
        fake.start()
    try:
        for round_no in range(ROUNDS):
            daemon.start()
            if round_no == 0:
                start_fixture_acquisition(http_port)
            stop = threading.Event()
            streams = [
                Stream(ch, daemon, chain(pending[ch], fresh[ch]), ledger, stop)
                for ch in ("tcp", "http")
            ]
            for s in streams:
                s.start()
            stop.wait(rng.uniform(0.3, 2.0))
            daemon.kill9()
            for s in streams:
                s.finish()
            for ch in pending:
                lost = {o.tile.name: o.tile for o in ledger.of("lost", ch)}
                pending[ch] = [t for n, t in lost.items() if n in ledger.unanswered]
            assert not ledger.of("refused"), ledger.of("refused")
        assert len(ledger.acked) >= 2 * ROUNDS, len(ledger.acked)
        with daemon.running():
            for ch, tiles in pending.items():
                _resend(daemon, ch, tiles, ledger)
            assert not ledger.unanswered
            wait_for(
                "every tile uploaded", lambda: _keys_recorded(engine_config, ledger)
            )
            wait_for("an empty spool", lambda: not spool_leftovers(tmp_path / "spool"))
            assert_exactly_stored(
                http_port,
                engine_config,
                ledger.acked,
                store_root=tmp_path / "objects" if fake is None else None,
                spool=tmp_path / "spool",
                fake=fake,
            )
            states = link_states(engine_config)
            for tile_id, _ in ledger.acked.values():
                assert states[tile_id] == {"READY"}, tile_id
        assert not spool_leftovers(tmp_path / "spool")
    finally:
        if fake is not None:
            fake.stop()
