"""Child processes that never outlive the benchmark.

Every process is started in its own session with ``PR_SET_PDEATHSIG``, so the
kernel sends it SIGTERM if the benchmark itself dies, and it is registered
with :mod:`atexit` so that a normal exit or an exception stops it too.  The
kernel sends that signal when the *thread* that started the process exits,
so processes are started from the main thread only.
:func:`stop` is idempotent; callers also stop processes explicitly, in order.
"""

from __future__ import annotations

import atexit
import ctypes
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: SIGTERM when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` with stdout and stderr appended to ``log_path``."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
            start_new_session=True,
        )
    atexit.register(stop, proc)
    return proc


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int | None:
    """SIGTERM ``proc``, wait up to ``timeout`` s, then SIGKILL; return its status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode
