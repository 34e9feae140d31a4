"""A daemon with a fake sproxyd store and an acquisition with ROIs, for the live pages.

The store is the fake sproxyd as its own process, so that a test can stop it:
tiles sent then are acknowledged from the spool and stay there, recorded in
the database without a store key (what the page shows as "spooled").
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs
from PIL import Image

from imagecatcher.config import Config
from tests.conftest import FIXTURES
from tests.integration.daemon import ports, run_tool, write_config
from tests.integration.faults import Daemon, FakeStore, roi_cells, wait_for
from tests.integration.httpclient import post_form, request, send_tile

#: A production-shaped acquisition UID (yyMMddHHmmss).
UID = 170301120000
COLLECTION = "FAFB00_serial_sections"


def tiff16(seed: int, size: int = 256) -> bytes:
    """A 16-bit grey TIFF: a gradient plus noise, as a camera's tile."""
    rng = random.Random(seed)
    image = Image.new("I;16", (size, size))
    image.putdata(
        [
            min(65535, x * 200 + y * 50 + rng.randrange(4000))
            for y in range(size)
            for x in range(size)
        ]
    )
    out = io.BytesIO()
    image.save(out, format="TIFF")
    return out.getvalue()


@attrs.define
class LiveRig:
    """A running daemon, its fake store and the acquisition's ROI cells."""

    daemon: Daemon
    store: FakeStore
    http: int
    tcp: int
    cells: list[tuple[int, int]]

    def send(self, col: int, row: int, data: bytes, camera: int = 0) -> int:
        """Send one stable tile over TCP; its tile id once acknowledged."""
        with socket.create_connection(("127.0.0.1", self.tcp), timeout=60) as s:
            reply = send_tile(
                s, UID, camera, -1, col, row, hashlib.md5(data).digest(), data
            )
        assert reply.status == 0, reply
        return int(reply.tile_id)

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """GET a path of the daemon."""
        return request(self.http, "GET", path)

    def json(self, path: str) -> Any:
        """GET a JSON route that must answer 200."""
        status, _, body = self.get(path)
        assert status == 200, (path, status, body)
        return json.loads(body)

    def live(self) -> dict[str, Any]:
        """The acquisition page's document."""
        doc: dict[str, Any] = self.json(f"/service/v1/acquisition/{UID}/live")
        return doc

    def states(self) -> dict[tuple[int, int], str]:
        """The page's state of every tile, by (col, row)."""
        doc = self.live()
        flat = doc["tiles"]
        return {
            (flat[i + 1], flat[i + 2]): doc["states"][flat[i + 4]]
            for i in range(0, len(flat), 6)
        }

    def set_state(self, state: str, cells: list[tuple[int, int, int]]) -> None:
        """tile-state for (col, row, section) cells, as render does (§9.3)."""
        ids = [f"{UID}.{c}.{r}.{s}.0" for c, r, s in cells]
        status, _, body = request(
            self.http,
            "PUT",
            "/service/v1/tile-state",
            json.dumps({"state": state, "tileSpecIds": ids}).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 200 and json.loads(body)["nUpdates"] == len(ids), body

    def wait_state(self, cells: list[tuple[int, int]], state: str) -> None:
        """Wait until the page's document shows every cell in ``state``."""
        wait_for(
            f"{len(cells)} tile(s) {state}",
            lambda: all(self.states().get(c) == state for c in cells),
        )


@contextmanager
def live_rig(tmp_path: Path, db: Config) -> Iterator[LiveRig]:
    """Fake store, database, daemon; the fixture acquisition started, ROIs in."""
    store_port = ports()[0]
    http, tcp = ports()
    with FakeStore(store_port, tmp_path) as store:
        cfg = write_config(
            tmp_path,
            db,
            CONTENT_STORE_URL=store.url,
            JFS_MAPPING={"PING": COLLECTION, "FAFB_00": COLLECTION},
        )
        done = run_tool(["--config", str(cfg), "db-init"], tmp_path)
        assert done.returncode == 0, done.stderr
        daemon = Daemon(cfg, tmp_path, http, tcp)
        with daemon.running():
            ini = (FIXTURES / "123_logfile.ini").read_bytes()
            status, body = post_form(
                http,
                "/service/v1/start-acquisition",
                [("acq-inilog", f"{UID}_logfile.ini", ini)],
            )
            assert status == 200, body
            status, body = post_form(
                http,
                f"/service/v1/create-rois/{UID}",
                [
                    (
                        "roi-spec",
                        f"{UID}_ROI_spec.ini",
                        (FIXTURES / "123_ROI_spec.ini").read_bytes(),
                    ),
                    (
                        "roi-tiles",
                        f"{UID}_ROI_tiles.csv",
                        (FIXTURES / "123_ROI_tiles.csv").read_bytes(),
                    ),
                ],
            )
            assert status == 200, body
            yield LiveRig(daemon, store, http, tcp, roi_cells())
