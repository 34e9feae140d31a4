"""Schemathesis against a live daemon, on SQLite and on MariaDB.

The daemon serves its own OpenAPI document; Schemathesis generates requests
for every operation in it (a fixed, bounded number per operation, the same
every run) and checks each answer: no 5xx, a status, content type, headers
and body as the document says.  The database holds a real acquisition
(fixture INI, ROIs, a few tiles, calibrations), so lookups by the document's
example ids find something.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from imagecatcher.config import Config
from imagecatcher.web.apidoc import build_document
from imagecatcher.web.apidoc.common import EXAMPLE_UID
from imagecatcher.web.apidocs import api_version
from tests.conftest import FIXTURES, MariaDB, fresh_mariadb_database
from tests.integration.daemon import ports, run_tool, running, twistd_argv, write_config
from tests.integration.httpclient import post_form, request

#: Generated cases per operation and phase: enough to reach every status,
#: few enough that both engines finish in a few minutes on a busy machine.
MAX_EXAMPLES = 25
SEED = 20261201
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
]
SECTION = f"{EXAMPLE_UID}_FAFB00_sections_5800-5802_montage"
TILES = (
    "col0008_row0080_cam0.tif",
    "col0047_row0021_cam0.tif",
    "col0006_row0017_cam1.tif",
)


def _populate(port: int) -> None:
    """An acquisition as a rig leaves it: log, ROIs, tiles; and calibrations."""
    log = (FIXTURES / "123_logfile.ini").read_bytes()
    status, body = post_form(
        port,
        "/service/v1/start-acquisition",
        [("acq-inilog", f"{EXAMPLE_UID}_logfile.ini", log)],
    )
    assert status == 200 and body == {"uid": EXAMPLE_UID}, body
    status, body = post_form(
        port,
        f"/service/v1/create-rois/{EXAMPLE_UID}",
        [
            (
                "roi-spec",
                f"{SECTION}_ROI_spec.ini",
                (FIXTURES / "123_ROI_spec.ini").read_bytes(),
            ),
            (
                "roi-tiles",
                f"{SECTION}_ROI_tiles.csv",
                (FIXTURES / "123_ROI_tiles.csv").read_bytes(),
            ),
        ],
    )
    assert status == 200, body
    for name in TILES:
        status, _, raw = request(
            port,
            "PUT",
            f"/service/v1/capture-image-content/{EXAMPLE_UID}?tile-filename={name}",
            os.urandom(4096),
            {"Content-Type": "application/octet-stream"},
        )
        assert status == 200, raw
    status, _, raw = request(
        port,
        "POST",
        "/service/v1/calibrations",
        (FIXTURES / "141028_lens_correction_with_offset.json").read_bytes(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, raw


def _daemon(directory: Path, config: Config) -> Iterator[int]:
    cfg = write_config(
        directory, config, JFS_MAPPING={"PING": "FAFB", "FAFB_00": "FAFB"}
    )
    assert run_tool(["--config", str(cfg), "db-init"], directory).returncode == 0
    http_port, tcp_port = ports()
    with running(twistd_argv(cfg, http_port, tcp_port), directory, http_port):
        _populate(http_port)
        yield http_port


# One fixture and one test per engine, not a parametrised pair: pytest-twisted
# wraps a Hypothesis test in place, so a test function run under two
# parameters would be wrapped twice.
@pytest.fixture(scope="module")
def sqlite_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A populated daemon on SQLite, shared by the module's operations."""
    directory = tmp_path_factory.mktemp("fuzz-sqlite")
    config = Config(db_driver="sqlite", sqlite_path=str(directory / "db.sqlite"))
    yield from _daemon(directory, config)


@pytest.fixture(scope="module")
def mariadb_daemon(
    tmp_path_factory: pytest.TempPathFactory, mariadb: MariaDB
) -> Iterator[int]:
    """A populated daemon on the private MariaDB (strict mode)."""
    directory = tmp_path_factory.mktemp("fuzz-mariadb")
    yield from _daemon(directory, fresh_mariadb_database(mariadb))


#: The document under test: the one the package builds (the daemon serves the
#: same; :func:`test_daemon_serves_the_document` holds it to that).
DOCUMENT = build_document(api_version())


def fuzz_config() -> SchemathesisConfig:
    """Schemathesis settings: bounded, deterministic, no stateful phase."""
    return SchemathesisConfig.from_dict(
        {
            "request-timeout": 60,
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )


schema = schemathesis.openapi.from_dict(DOCUMENT, config=fuzz_config())


_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _call_and_validate(case: Any, port: int) -> None:
    case.call_and_validate(base_url=f"http://127.0.0.1:{port}", checks=CHECKS)


@schema.parametrize()
@_SETTINGS
def test_sqlite_answers_as_documented(case: Any, sqlite_daemon: int) -> None:
    """On SQLite, each generated request gets an answer the document describes."""
    _call_and_validate(case, sqlite_daemon)


@schema.parametrize()
@_SETTINGS
def test_mariadb_answers_as_documented(case: Any, mariadb_daemon: int) -> None:
    """On MariaDB, each generated request gets an answer the document describes."""
    _call_and_validate(case, mariadb_daemon)


def test_daemon_serves_the_document(sqlite_daemon: int) -> None:
    """The daemon's openapi.json is the document the cases were generated from."""
    status, _, raw = request(sqlite_daemon, "GET", "/service/v1/openapi.json")
    assert status == 200 and json.loads(raw) == DOCUMENT


def test_daemon_serves_the_docs_page_and_its_files(sqlite_daemon: int) -> None:
    """The installed daemon serves the page and each file it names; none is remote."""
    status, headers, raw = request(sqlite_daemon, "GET", "/service/v1/docs")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = raw.decode("utf-8")
    assert not re.search(r"(?:https?:)?//", page), "the page names a remote URL"
    referenced = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert {"docs/swagger-ui-bundle.js", "docs/swagger-ui.css", "docs/docs.js"} <= set(
        referenced
    )
    for ref in referenced:
        status, headers, body = request(sqlite_daemon, "GET", f"/service/v1/{ref}")
        assert status == 200 and body, ref
        if ref.endswith(".js"):
            assert headers["Content-Type"].startswith("text/javascript"), ref
    script = request(sqlite_daemon, "GET", "/service/v1/docs/docs.js")[2]
    assert b'url: "openapi.json"' in script and b"validatorUrl: null" in script


def test_fuzz_config_is_bounded_and_fixed() -> None:
    """The run is reproducible and bounded: fixed seed, deterministic, capped."""
    config = fuzz_config()
    assert config.seed == SEED
    generation = config.projects.default.generation
    assert generation.deterministic and generation.max_examples == MAX_EXAMPLES
