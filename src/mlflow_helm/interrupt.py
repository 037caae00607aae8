"""Ctrl-C (SIGINT) and SIGTERM: stop new work at once, clean up, say what was applied.

The first signal only sets `CANCELLED` and sends SIGTERM to the child processes we track
(Helm); it raises nothing where it lands. Python runs signal
handlers in the main thread only, between bytecodes, and our steps run in worker threads
(https://docs.python.org/3/library/signal.html#signals-and-threads), so every place that
waits or starts new work asks instead:
- `check()` before each API request (gcp/, kube.py):
  after the signal no new request leaves, so nothing is changed that was not already under
  way (a Cloud SQL operation already started finishes on the instance by itself);
- `sleep()` for every retry back-off and operation poll: an Event wait, which returns at
  once when the signal comes (a Cloud SQL wait never runs its course);
- the step runner (commands.apply_all) starts no step after it.
Either raises `Interrupted`, a BaseException like KeyboardInterrupt, so no `except
Exception` on the way mistakes it for a failure to retry.

Cleanup runs `shielded()`: its requests still go out (the temporary grant user is deleted,
the Lease released, the install record written) and its waits still wait, for at most
CLEANUP_LIMIT seconds. A second signal does not cut cleanup short, because that would leave
a `cloudsqlsuperuser` member behind: it is answered with a line saying what is being cleaned
up, and cleanup ends within the limit; SIGKILL is the way out, and then the next run removes
the temporary user (dbgrant.temporary_admin takes a leftover over) and takes the Lease over
once it expires.

The CLI exits 128 + the signal's number (130 for SIGINT, 143 for SIGTERM), as shells report
a command a signal stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator

CANCELLED = threading.Event()
CLEANUP_LIMIT = 60.0  # seconds one cleanup may wait (a Cloud SQL users.delete: seconds)
HELM_GRACE = 10.0  # seconds Helm has to cancel by itself before it is killed

_signum = 0
_count = 0
_children: dict[int, str] = {}  # pid -> what it is, for the second signal's message
_children_lock = threading.Lock()
_local = threading.local()
_raising = False  # the main thread waits on the terminal (a confirmation): raise there


class Interrupted(BaseException):
    """The run was stopped by a signal; carries what was applied (commands.Result)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.result = None  # the Result with what was applied, set by the command

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def signum() -> int:
    return _signum


def _shielded() -> bool:
    return getattr(_local, "deadline", None) is not None


def check() -> None:
    """Raise Interrupted once a signal came, unless this thread is cleaning up (or has
    spent its cleanup time)."""
    if not CANCELLED.is_set():
        return
    deadline = getattr(_local, "deadline", None)
    if deadline is None or time.monotonic() > deadline:
        raise Interrupted(_signum)


def sleep(seconds: float) -> None:
    """time.sleep that a signal ends at once (raising Interrupted)."""
    check()
    if _shielded():
        left = _local.deadline - time.monotonic()
        time.sleep(max(0.0, min(seconds, left)))
    elif CANCELLED.wait(seconds):
        check()
    check()


@contextlib.contextmanager
def shielded(limit: float = CLEANUP_LIMIT) -> Iterator[None]:
    """Cleanup: requests and waits go on after the signal, for at most `limit` seconds."""
    outer = getattr(_local, "deadline", None)
    _local.deadline = time.monotonic() + limit if outer is None else outer
    try:
        yield
    finally:
        _local.deadline = outer


@contextlib.contextmanager
def raising() -> Iterator[None]:
    """While the main thread waits for the user (a yes/no on the terminal, before anything
    changed), a signal raises there at once: a read retried after the handler (PEP 475)
    would otherwise wait for Enter."""
    global _raising
    _raising = True
    try:
        if CANCELLED.is_set():
            raise Interrupted(_signum)
        yield
    finally:
        _raising = False


def track(pid: int, what: str) -> None:
    with _children_lock:
        _children[pid] = what
    if CANCELLED.is_set():  # started just as the signal came
        _terminate(pid)


def untrack(pid: int) -> None:
    with _children_lock:
        _children.pop(pid, None)


def _terminate(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGTERM)


def _write(line: str) -> None:
    # os.write, not print: the handler may run while the main thread is inside a write to
    # stderr, and the buffered writer refuses a reentrant call.
    with contextlib.suppress(OSError):
        os.write(2, (line + "\n").encode())


def _handle(number: int, _frame) -> None:
    global _signum, _count
    _count += 1
    name = signal.Signals(number).name
    if _count == 1:
        _signum = number
        CANCELLED.set()
        _write(f"\n{name} received: stopping (no new change starts; cleaning up)")
        with _children_lock:
            pids = list(_children)
        for pid in pids:
            _terminate(pid)
        if _raising:
            raise Interrupted(number)
        return
    with _children_lock:
        running = sorted(set(_children.values()))
    _write(f"{name} received again: still cleaning up "
           f"({', '.join(running) + '; ' if running else ''}the lock, the install record); "
           f"this ends within {CLEANUP_LIMIT:.0f}s. Cutting it short would leave the temporary "
           "database user behind (SIGKILL does; the next run removes it)")


@contextlib.contextmanager
def handlers() -> Iterator[None]:
    """SIGINT and SIGTERM go to `_handle` for the duration (main thread only: Python lets
    only it set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reset() -> None:
    """Forget a signal (tests that interrupt in-process)."""
    global _signum, _count
    CANCELLED.clear()
    _signum = _count = 0
