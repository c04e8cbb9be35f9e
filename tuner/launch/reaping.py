"""A slot process's end, read safely from several of the driver's threads.

CPython's forkserver ``Popen.poll`` is not thread-safe (python/cpython#130895, open for
3.11 to 3.14): when two threads read a dead child's exit code at once, one reads it from
the fork server and the other finds the pipe at its end and records 255 instead, over the
right code: a slot killed by SIGKILL read "exited with status 255" now and then. The
driver reads its slots from one thread each, the pool from another, and
``Process.start`` polls every child too (``multiprocessing.process._cleanup``), so every
such read and every start of a slot process takes this one lock. Blocking waits are made
on the process's sentinel outside it, so no thread waits long for the lock.
"""

from __future__ import annotations

import threading
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess

_POLL = threading.Lock()


def start(process: BaseProcess) -> None:
    with _POLL:
        process.start()


def alive(process: BaseProcess) -> bool:
    with _POLL:
        return process.is_alive()


def exit_code(process: BaseProcess) -> int | None:
    """Its exit code once it has ended (None before), as ``Process.exitcode`` reads it."""
    with _POLL:
        return process.exitcode


def wait_for_exit(process: BaseProcess, timeout: float | None = None) -> None:
    """Wait up to ``timeout`` seconds for it to end (``Process.join``, reaped safely)."""
    wait([process.sentinel], timeout)
    with _POLL:
        process.join(0)
