"""Progress bars, summaries and run counters (imagecatcher.cli.progress)."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from pathlib import Path

import pytest

from imagecatcher.cli.progress import (
    Latency,
    ProgressBar,
    Snapshot,
    Tracker,
    format_bytes,
    format_duration,
    format_postfix,
    format_table,
    percentile,
    summary_rows,
    write_json,
)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_postfix_shows_rate_and_errors() -> None:
    """The bar's postfix has MB/s and errors; no retries or skips when none."""
    s = Snapshot(sent=4, failed=1, bytes_sent=8_000_000, elapsed=2.0, total=10)
    assert format_postfix(s) == "4.0 MB/s, errors 1"


def test_postfix_shows_retries_skips_and_time_left() -> None:
    """Retries and skipped tiles show when any; a timed run shows the time left."""
    s = Snapshot(sent=3, skipped=7, retried=2, elapsed=25.0, duration=90.0)
    assert format_postfix(s) == ("0.0 MB/s, errors 0, retries 2, skipped 7, left 1:05")


def test_timed_run_eta_follows_the_clock() -> None:
    """A timed run's ETA is the time left, never negative."""
    assert Snapshot(elapsed=25.0, duration=90.0).eta == 65.0
    assert Snapshot(elapsed=95.0, duration=90.0).eta == 0.0
    assert Snapshot(elapsed=0.0, total=10).eta is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "--:--"), (0, "0:00"), (59.6, "1:00"), (61, "1:01"), (3725, "1:02:05")],
)
def test_durations(seconds: float | None, text: str) -> None:
    """Durations print as m:ss or h:mm:ss."""
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1500, "1.5 kB"),
        (5_557_452, "5.6 MB"),
        (3.2e9, "3.2 GB"),
    ],
)
def test_byte_counts(n: float, text: str) -> None:
    """Byte counts use powers of ten."""
    assert format_bytes(n) == text


def test_percentiles_are_nearest_rank() -> None:
    """p50/p99 are nearest-rank values of the sample; empty gives zeros."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99
    assert percentile([3.0], 99) == 3.0 and percentile([], 50) == 0.0
    lat = Latency.of([0.2, 0.1, 0.4, 0.3])
    assert (lat.count, lat.p50, lat.p99, lat.max) == (4, 0.2, 0.4, 0.4)
    assert lat.mean == pytest.approx(0.25)
    assert lat.to_json()["p99_ms"] == 400.0 and Latency.of([]) == Latency()


def test_tracker_counts_and_freezes_on_stop() -> None:
    """The tracker counts outcomes; stopping fixes the elapsed time."""
    clock = FakeClock()
    t = Tracker(total=5, clock=clock)
    t.start()
    clock.now += 2
    t.sent_one(1000, 0.05)
    t.sent_one(3000, 0.07)
    t.failed_one()
    t.skipped_one()
    t.retried_one()
    t.stop()
    clock.now += 10
    s = t.snapshot()
    assert (s.sent, s.failed, s.skipped, s.retried, s.bytes_sent) == (2, 1, 1, 1, 4000)
    assert s.elapsed == 2 and s.done == 4 and s.tiles_per_second == 1.0
    assert t.latencies() == [0.05, 0.07]
    assert s.to_json()["mb_per_second"] == 0.002


def bar_states(written: str) -> list[str]:
    """What a terminal showed, one entry per redraw or printed line."""
    return [part.strip() for part in re.split(r"[\r\n]", written) if part.strip()]


def test_progress_bar_is_silent_off_a_terminal() -> None:
    """Off a terminal no bar is drawn, but messages still print."""
    stream = io.StringIO()
    tracker = Tracker(total=10)
    with ProgressBar(tracker, stream, interval=0.01) as bar:
        assert not bar.enabled
        tracker.sent_one(5_557_452, 0.01)
        bar.draw()
        bar.message("failed col0001_row0001_cam0.tif")
    assert stream.getvalue() == "failed col0001_row0001_cam0.tif\n"


def test_progress_bar_follows_the_tracker_on_a_terminal() -> None:
    """On a terminal the bar shows the tracker's counts and the postfix."""
    stream = FakeTTY()
    clock = FakeClock()
    tracker = Tracker(total=10, clock=clock)
    bar = ProgressBar(tracker, stream, interval=3600)
    with bar:
        assert bar.enabled
        tracker.start()
        clock.now += 2
        for _ in range(4):
            tracker.sent_one(2_000_000, 0.01)
        tracker.failed_one()
        tracker.retried_one()
        bar.draw()
        shown = bar_states(stream.getvalue())[-1]
    assert shown.startswith("50%|")
    assert "| 5/10 [" in shown
    assert " tiles/s, 4.0 MB/s, errors 1, retries 1]" in shown
    # The bar is cleared at the end: the summary table follows it.
    assert stream.getvalue().endswith("\r")
    assert bar_states(stream.getvalue().rsplit("\r", 2)[-2]) == []


def test_progress_bar_without_total_counts_tiles() -> None:
    """Without a total the bar counts tiles, with no percentage."""
    stream = FakeTTY()
    tracker = Tracker()
    with ProgressBar(tracker, stream, interval=3600) as bar:
        for _ in range(3):
            tracker.skipped_one()
        bar.draw()
        shown = bar_states(stream.getvalue())[-1]
    assert shown.startswith("3 tiles [") and "%" not in shown
    assert shown.endswith("errors 0, skipped 3]")


def test_progress_bar_total_can_arrive_later() -> None:
    """A total the run learns after the bar started (a feed) is shown."""
    stream = FakeTTY()
    tracker = Tracker()
    with ProgressBar(tracker, stream, interval=3600) as bar:
        tracker.total = 8
        tracker.sent_one(1000, 0.01)
        tracker.sent_one(1000, 0.01)
        bar.draw()
        shown = bar_states(stream.getvalue())[-1]
    assert shown.startswith("25%|") and "| 2/8 [" in shown


def test_progress_bar_messages_print_above_the_bar() -> None:
    """A message clears the bar, prints its line and redraws the bar below."""
    stream = FakeTTY()
    tracker = Tracker(total=10)
    with ProgressBar(tracker, stream, interval=3600) as bar:
        tracker.sent_one(1000, 0.01)
        bar.draw()
        bar.message("retry col0002_row0001_cam1.tif: connection reset")
        written = stream.getvalue()
    before, after = written.split("retry col0002_row0001_cam1.tif: connection reset\n")
    assert "1/10" in bar_states(before)[-1]
    assert before.endswith("\r")  # the bar line was cleared first
    assert "1/10" in bar_states(after)[0]


def test_progress_bar_thread_redraws_from_the_tracker() -> None:
    """The bar's thread moves it as sender threads count tiles."""
    stream = FakeTTY()
    tracker = Tracker(total=4)
    with ProgressBar(tracker, stream, interval=0.01):
        senders = [
            threading.Thread(target=tracker.sent_one, args=(1000, 0.01))
            for _ in range(4)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        while "4/4" not in stream.getvalue():
            time.sleep(0.01)
    assert any(state.startswith("100%|") for state in bar_states(stream.getvalue()))


def test_table_alignment() -> None:
    """Number columns are right-aligned, text columns left-aligned."""
    table = format_table(
        ("camera", "tiles", "p50 ms"), [["a", 5, 1.25], ["bb", 10, 20.0]]
    )
    assert table.splitlines() == [
        "camera  tiles  p50 ms",
        "------  -----  ------",
        "a           5     1.2",
        "bb         10    20.0",
    ]
    assert format_table(("k", "v"), [["x", "1"]], align="rr").splitlines()[2] == "x  1"


def test_summary_rows_include_latency_only_when_measured() -> None:
    """The summary lists counts and rates, and ack latency when tiles were sent."""
    s = Snapshot(sent=2, bytes_sent=2_000_000, elapsed=1.0)
    rows = dict(summary_rows(s, Latency.of([0.01, 0.02])))
    assert rows["tiles sent"] == 2 and rows["MB/s"] == "2.0"
    assert rows["ack p99"] == "20.0 ms"
    assert "ack p50" not in dict(summary_rows(Snapshot(), Latency()))


def test_write_json(tmp_path: Path) -> None:
    """Results are written as JSON, directories created."""
    path = tmp_path / "out" / "run.json"
    write_json(path, {"tiles": Snapshot(sent=1, elapsed=1.0).to_json()})
    assert json.loads(path.read_text())["tiles"]["sent"] == 1
