"""Command lines of imagecatcher-client and -simulator, and their pure helpers."""

from __future__ import annotations

import random
from datetime import datetime
from pathlib import Path

import pytest

from imagecatcher.acqlog import parse_acquisition_log
from imagecatcher.cli import client, simulator
from imagecatcher.cli.feed import (
    AcquisitionDir,
    AcquisitionDirError,
    ancillary_type,
    local_path,
)
from imagecatcher.cli.sender import (
    Endpoint,
    Method,
    RetryPolicy,
    SendError,
    encode_multipart,
    parse_endpoint,
    parse_method,
    with_retries,
)
from imagecatcher.names import stable_name

# -- client arguments --------------------------------------------------------------


def test_old_single_dash_flags() -> None:
    """The old tool's single-dash flags parse as before."""
    o = client.parse_args(
        [
            "-action",
            "send-acq",
            "-service-url",
            "http://127.0.0.1:5001",
            "-acq-service-url",
            "http://127.0.0.1:6001",
            "-tile-service-url",
            "127.0.0.1:5002",
            "-acq-dir-url",
            "file:///data/123_acq",
            "-camera",
            "-1",
            "-col",
            "3",
            "-row",
            "4",
            "-rate",
            "150",
            "-send-method",
            "TCP-PUT",
            "-logfile",
            "/tmp/x/client.log",
        ]
    )
    assert o.action == "send-acq" and o.acq_dir == "file:///data/123_acq"
    assert o.acq_endpoint == Endpoint("127.0.0.1", 6001)
    assert o.tile_endpoint == Endpoint("127.0.0.1", 5002)
    assert (o.camera, o.col, o.row, o.rate_ms) == (-1, 3, 4, 150.0)
    assert o.method is Method.TCP and o.logfile == Path("/tmp/x/client.log")
    assert o.parallel == 4  # one sender per camera


def test_long_flags_and_positional_action() -> None:
    """``--long`` flags and the action as first argument work too."""
    o = client.parse_args(
        [
            "feed-acquisition",
            "--acq-dir",
            "d",
            "--send-method",
            "http-post",
            "--parallel",
            "7",
            "--resume",
            "--retries",
            "1",
            "--json",
            "out.json",
        ]
    )
    assert o.action == "feed-acquisition" and o.method is Method.HTTP_POST
    assert (o.parallel, o.resume, o.retries) == (7, True, 1)
    assert o.json_path == Path("out.json")
    assert o.tile_endpoint == o.acq_endpoint == Endpoint("localhost", 5001)


def test_equals_form_and_defaults() -> None:
    """``-flag=value`` works; the defaults are send-tile over TCP-SEND."""
    o = client.parse_args(["-acq-dir-url=d", "-rate=50", "-col=2"])
    assert (o.action, o.rate_ms, o.col, o.parallel) == ("send-tile", 50.0, 2, 1)
    assert o.method is Method.TCP


def test_create_rois_is_an_alias() -> None:
    """``create-rois`` runs send-rois."""
    assert client.parse_args(["-action", "create-rois", "--acq-dir", "d"]).action == (
        "send-rois"
    )


@pytest.mark.parametrize(
    ("name", "method"),
    [
        ("TCP-PUT", Method.TCP),
        ("TCP-SEND", Method.TCP),
        ("tcp-send", Method.TCP),
        ("HTTP-PUT", Method.HTTP_PUT),
        (" http-post ", Method.HTTP_POST),
    ],
)
def test_method_names(name: str, method: Method) -> None:
    """Method names are case-insensitive and TCP-PUT is TCP-SEND."""
    assert parse_method(name) is method


@pytest.mark.parametrize(
    "argv",
    [
        ["-action", "send-everything", "--acq-dir", "d"],
        ["bogus", "--acq-dir", "d"],
        ["-send-method", "UDP", "--acq-dir", "d"],
        ["-action", "send-tile"],
        ["send-rois", "-action", "send-tile", "--acq-dir", "d"],
        ["-action", "send-acq", "-camera", "4", "--acq-dir", "d"],
        ["-camera", "-2", "--acq-dir", "d"],
        ["--parallel", "0", "--acq-dir", "d"],
        ["-service-url", "https://127.0.0.1:5001", "--acq-dir", "d"],
        ["-tile-service-url", "127.0.0.1:99999", "--acq-dir", "d"],
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Unknown actions or methods and bad values exit 2 with the usage."""
    with pytest.raises(SystemExit) as exc:
        client.parse_args(argv)
    assert exc.value.code == 2
    assert "usage: imagecatcher-client" in capsys.readouterr().err


def test_main_exits_2_on_unknown_action(capsys: pytest.CaptureFixture[str]) -> None:
    """The console entry point itself exits 2 for an unknown action."""
    with pytest.raises(SystemExit) as exc:
        client.main(["-action", "nothing", "-acq-dir-url", "d"])
    assert exc.value.code == 2
    assert "invalid choice: 'nothing'" in capsys.readouterr().err


def test_tcp_goes_to_port_5002_of_the_service_host() -> None:
    """Without -tile-service-url a TCP sender uses the service host on 5002 (Q40)."""
    o = client.parse_args(["-service-url", "http://127.0.0.2:7001", "--acq-dir", "d"])
    assert o.tile_endpoint == Endpoint("127.0.0.2", 5002)
    o = client.parse_args(
        ["-tile-service-url", "http://127.0.0.1:7002", "--acq-dir", "d"]
    )
    assert o.tile_endpoint == Endpoint("127.0.0.1", 7002, "")
    o = client.parse_args(
        [
            "-tile-service-url",
            "127.0.0.1:7003",
            "-send-method",
            "HTTP-PUT",
            "-acq-dir-url",
            "d",
        ]
    )
    assert o.tile_endpoint == Endpoint("127.0.0.1", 7003)


# -- addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("127.0.0.1:5002", Endpoint("127.0.0.1", 5002)),
        ("localhost", Endpoint("localhost", 9)),
        (":5002", Endpoint("localhost", 5002)),
        ("[::1]:5002", Endpoint("::1", 5002)),
        ("tcp://127.0.0.1:5002", Endpoint("127.0.0.1", 5002)),
        ("http://127.0.0.1:5001", Endpoint("127.0.0.1", 5001)),
        ("http://127.0.0.1:5001/", Endpoint("127.0.0.1", 5001)),
        ("HTTP://127.0.0.1", Endpoint("127.0.0.1", 9)),
        ("http://127.0.0.1:5000/catcher/", Endpoint("127.0.0.1", 5000, "/catcher")),
    ],
)
def test_endpoint_forms(text: str, endpoint: Endpoint) -> None:
    """URLs and host:port name the same endpoints; a missing port is the default."""
    assert parse_endpoint(text, 9) == endpoint


@pytest.mark.parametrize(
    "text",
    [
        "",
        "https://127.0.0.1:5001",
        "127.0.0.1:0",
        "127.0.0.1:65536",
        "127.0.0.1:port",
        "http://127.0.0.1:5001/?x=1",
        "tcp://127.0.0.1:5002/path",
    ],
)
def test_bad_endpoints(text: str) -> None:
    """Other schemes, bad ports and stray parts are refused."""
    with pytest.raises(ValueError):
        parse_endpoint(text, 5001)


def test_endpoint_text_brackets_ipv6() -> None:
    """An endpoint prints as host:port, IPv6 hosts in brackets."""
    assert str(Endpoint("::1", 5002)) == "[::1]:5002"
    assert str(Endpoint("127.0.0.1", 5000, "/c")) == "127.0.0.1:5000/c"


# -- DAQ timing ------------------------------------------------------------------------

DAQ = (
    '"Step", "Cam 0 Col","Cam 0 Row",Cam 1 Col,Cam 1 Row,Cam 2 Col,Cam 2 Row,'
    "Cam 3 Col,Cam 3 Row,Time\r\n"
    "0, 1,2,3,4,5,6,7,8,0.1\r\n"
    "1,9,10,,,11,x,13,14,0.2\r\n"
    "\r\n"
    '2,"15","16",17,18,19,20,21,22,0.3\r\n'
)


def test_daq_steps_all_cameras() -> None:
    """Each row is a step; blank or non-numeric cells leave that camera out."""
    assert client.daq_steps(DAQ, -1) == [
        [(0, 1, 2), (1, 3, 4), (2, 5, 6), (3, 7, 8)],
        [(0, 9, 10), (3, 13, 14)],
        [(0, 15, 16), (1, 17, 18), (2, 19, 20), (3, 21, 22)],
    ]


def test_daq_steps_one_camera() -> None:
    """A single camera takes only its own columns."""
    assert client.daq_steps(DAQ, 1) == [[(1, 3, 4)], [], [(1, 17, 18)]]


def test_daq_without_camera_columns() -> None:
    """A CSV without the camera's columns is an error."""
    with pytest.raises(AcquisitionDirError, match="Cam 2 Col"):
        client.daq_steps("Cam 0 Col,Cam 0 Row\n1,2\n", 2)


# -- acquisition directories ---------------------------------------------------------


def test_acquisition_dir_layout(tmp_path: Path) -> None:
    """The UID comes from the directory name; files are found by suffix."""
    d = tmp_path / "123_acq"
    (d / "col0004").mkdir(parents=True)
    (d / "drift").mkdir()
    for name in (
        "123_logfile.ini",
        "123_ROI_spec.ini",
        "123_acq_mosaic.png",
        "123_acq_statistics_cam2.csv",
        "123_notes.txt",
        "123_ROI_tiles.csv",
    ):
        (d / name).write_text("x")
    (d / "col0004" / "col0004_row0088_cam0.tif").write_bytes(b"t")
    (d / "col0004" / "thumbs.tif").write_bytes(b"t")
    (d / "drift" / "Dump_cam1_frame000002_col0004_row0088.tif").write_bytes(b"t")
    acq = AcquisitionDir.open(f"file://{d}")
    assert acq.uid == 123 and acq.one("_logfile.ini").name == "123_logfile.ini"
    assert [p.name for p in acq.tile_files()] == [
        "col0004_row0088_cam0.tif",
        "Dump_cam1_frame000002_col0004_row0088.tif",
    ]
    assert [p.name for p in acq.ancillary_files()] == [
        "123_acq_mosaic.png",
        "123_acq_statistics_cam2.csv",
        "123_logfile.ini",
    ]
    assert acq.tile_path(4, 88, 0).relative_to(d) == Path(
        "col0004/col0004_row0088_cam0.tif"
    )
    with pytest.raises(AcquisitionDirError, match="no file matching"):
        acq.one("_DAQ timing.csv")
    (d / "1234_logfile.ini").write_text("another acquisition")
    assert acq.one("_logfile.ini").name == "123_logfile.ini"
    (d / "123_b_logfile.ini").write_text("x")
    with pytest.raises(AcquisitionDirError, match="2 files matching"):
        acq.one("_logfile.ini")


def test_acquisition_dir_needs_a_uid(tmp_path: Path) -> None:
    """A directory whose name does not start with a UID is refused."""
    (tmp_path / "acq_123").mkdir()
    with pytest.raises(AcquisitionDirError, match="<uid>_"):
        AcquisitionDir.open(str(tmp_path / "acq_123"))
    with pytest.raises(AcquisitionDirError, match="not a directory"):
        AcquisitionDir.open(str(tmp_path / "123_missing"))


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("/data/123_x", "/data/123_x"),
        ("rel/123_x", "rel/123_x"),
        ("file:///data/123_x", "/data/123_x"),
        ("file://localhost/data/123%20x", "/data/123 x"),
    ],
)
def test_local_paths(text: str, path: str) -> None:
    """-acq-dir-url takes a path or a local file:// URL."""
    assert local_path(text) == Path(path)


@pytest.mark.parametrize("text", ["http://127.0.0.1/123_x", "file://rig/data/123_x"])
def test_remote_directories_are_refused(text: str) -> None:
    """Other schemes and remote hosts are refused."""
    with pytest.raises(AcquisitionDirError, match="not a local directory"):
        local_path(text)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("123_x_mosaic.png", "mosaic.png"),
        ("123_statistics_cam3.csv", "statistics.csv"),
        ("123_stored_image_list_cam4.csv", None),
        ("123_DAQ timing.csv", "DAQ timing.csv"),
        ("readme.txt", None),
    ],
)
def test_ancillary_types(name: str, kind: str | None) -> None:
    """Ancillary types follow §5.6's suffixes, ``_camN.csv`` for N in 0..3."""
    assert ancillary_type(name) == kind


# -- sending helpers -------------------------------------------------------------------


def test_retries_transient_errors_with_backoff() -> None:
    """Transient failures are retried with growing pauses, then succeed."""
    calls: list[int] = []
    pauses: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise SendError("HTTP 503", transient=True)
        return "ok"

    policy = RetryPolicy(retries=3, base_delay=1.0, max_delay=1.5)
    assert with_retries(flaky, policy, sleep=pauses.append) == "ok"
    assert len(calls) == 3 and len(pauses) == 2
    assert 0.5 <= pauses[0] <= 1.0 and 0.75 <= pauses[1] <= 1.5


def test_retries_are_bounded_and_skip_permanent_errors() -> None:
    """A permanent error is raised at once; transient ones after the last retry."""
    pauses: list[float] = []

    def refused() -> None:
        raise SendError("HTTP 404", transient=False)

    with pytest.raises(SendError, match="404"):
        with_retries(refused, RetryPolicy(retries=5), sleep=pauses.append)
    assert pauses == []

    def down() -> None:
        raise SendError("refused", transient=True)

    with pytest.raises(SendError, match="refused"):
        with_retries(down, RetryPolicy(retries=2), sleep=pauses.append)
    assert len(pauses) == 2


def test_backoff_is_capped() -> None:
    """Pauses double from the base delay up to the cap."""
    delays = list(
        RetryPolicy(retries=6, base_delay=0.5, max_delay=4).delays(random.Random(1))
    )
    assert len(delays) == 6 and max(delays) <= 4
    assert all(0.25 <= d for d in delays)


def test_multipart_encoding() -> None:
    """Fields and files are encoded with their names, file names and bytes."""
    body, ctype = encode_multipart(
        [
            ("tile-file", "col1_row2_cam3.tif", b"\x00\xff"),
            ("checksum-str", None, b"ab"),
        ]
    )
    boundary = ctype.partition("boundary=")[2]
    assert ctype.startswith("multipart/form-data; boundary=")
    assert body.endswith(f"--{boundary}--\r\n".encode())
    assert b'name="tile-file"; filename="col1_row2_cam3.tif"' in body
    assert b"\r\n\r\n\x00\xff\r\n" in body and b'name="checksum-str"\r\n' in body


# -- simulator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("5557452", 5557452),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("5.3m", int(5.3 * 1024 * 1024)),
        ("20M", 20 * 1024 * 1024),
        (" 1 ", 1),
    ],
)
def test_tile_sizes(text: str, size: int) -> None:
    """Sizes take k/K (KiB) and m/M (MiB) suffixes."""
    assert simulator.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "5x", "m", "-1k", "1.5g"])
def test_bad_tile_sizes(text: str) -> None:
    """Anything else is refused."""
    with pytest.raises(ValueError):
        simulator.parse_size(text)


def test_simulator_defaults() -> None:
    """4 cameras, 150 ms, 5557452-byte tiles over TCP to the service host's 5002."""
    o = simulator.parse_args(["--service-url", "127.0.0.1:5001"])
    assert (o.cameras, o.rate_ms, o.tile_size) == (4, 150.0, 5557452)
    assert o.method is Method.TCP and o.tile_endpoint == Endpoint("127.0.0.1", 5002)
    assert o.duration == simulator.DEFAULT_DURATION and o.tiles is None


def test_simulator_http_and_old_flags() -> None:
    """HTTP tiles go to the service URL; the old flags are accepted."""
    argv = ["-service-url", "http://127.0.0.1:5001", "--method", "HTTP"]
    argv += ["-rate", "250", "-image-size", "20m", "-iterations", "5", "--acq-id", "42"]
    o = simulator.parse_args(argv)
    assert o.method is Method.HTTP_PUT and o.tile_endpoint == Endpoint(
        "127.0.0.1", 5001
    )
    assert (o.rate_ms, o.tile_size, o.tiles, o.duration, o.acq_id) == (
        250.0,
        20 * 1024 * 1024,
        5,
        None,
        42,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--duration", "1", "--tiles", "3"],
        ["--cameras", "5"],
        ["--method", "udp"],
        ["--tile-size", "lots"],
        ["--duration", "0"],
    ],
)
def test_simulator_usage_errors(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad simulator arguments exit 2 with the usage."""
    with pytest.raises(SystemExit) as exc:
        simulator.parse_args(argv)
    assert exc.value.code == 2
    assert "usage: imagecatcher-simulator" in capsys.readouterr().err


def test_tile_positions_advance_cols_and_rows() -> None:
    """Columns and rows both advance (Q40) and no tile name repeats."""
    names = {
        stable_name(*simulator.tile_position(i, cam, 4), cam)
        for i in range(simulator.X_STEPS * 3)
        for cam in range(4)
    }
    assert len(names) == simulator.X_STEPS * 3 * 4
    assert simulator.tile_position(simulator.X_STEPS + 1, 3, 4) == (3, 3)
    assert simulator.tile_position(simulator.X_STEPS + 1, 0, 1) == (1, 1)


def test_synthetic_log_parses_as_a_rig_log() -> None:
    """The generated INI log is what start-acquisition expects (§7.1)."""
    when = datetime(2026, 3, 4, 22, 5, 9)
    log = parse_acquisition_log(simulator.synthetic_log(7, when, 4, "SIM"))
    assert log.when_acquired == when and log.number_of_cameras == 4
    assert log.sample_name == "SIM" and log.tem_ip == bytes([10, 101, 50, 60])
    assert (log.target_num_cols, log.target_num_rows) == (108, 152)
    assert log.pixels_per_um == 242
    one = parse_acquisition_log(simulator.synthetic_log(7, when, 1, "SIM"))
    assert one.number_of_cameras == 1
    assert simulator.clock_uid(when) == 260304220509
