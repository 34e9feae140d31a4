"""Who is who among a daemon's processes and sockets, read from ``/proc`` (Linux)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

_LISTEN, _ESTABLISHED = "0A", "01"


def children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if int(ppid) == pid and state != "Z":
            found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` names a process that has not exited (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fds = Path(f"/proc/{pid}/fd")
    try:
        links = list(fds.iterdir())
    except OSError:
        return inodes
    for fd in links:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _tcp_sockets(port: int, state: str) -> list[str]:
    """Inodes of TCP sockets (IPv4 and IPv6) with this local port and state."""
    inodes = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and st == state:
                inodes.append(inode)
    return inodes


def owners(port: int, pids: Iterable[int], *, listening: bool) -> Counter[int]:
    """How many sockets on local ``port`` each of ``pids`` holds.

    ``listening``: listening sockets; otherwise the server side of
    established connections.
    """
    wanted = _tcp_sockets(port, _LISTEN if listening else _ESTABLISHED)
    counts: Counter[int] = Counter()
    for pid in pids:
        held = _socket_inodes(pid)
        counts[pid] = sum(1 for inode in wanted if inode in held)
    return counts


def wait_for(
    what: str, check: Callable[[], bool], timeout: float = 30, log: Path | None = None
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` (and the log) otherwise."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            text = log.read_text() if log is not None else ""
            raise AssertionError(f"timed out waiting for {what}\n{text[-6000:]}")
        time.sleep(0.1)


#: What a child logs once it takes connections from worker 0.
TAKING = "taking connections from worker 0"


def dispatching(
    parent: int, ports: Iterable[int], log: Path, starts: int = 1
) -> set[int]:
    """The child pids once worker 0 listens on every port and its children
    have logged taking connections ``starts`` times in all; else empty."""
    kids = children(parent)
    if not kids:
        return set()
    for port in ports:
        if owners(port, {parent}, listening=True)[parent] != 1:
            return set()
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return set()
    return kids if text.count(TAKING) >= starts else set()
