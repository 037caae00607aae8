"""Bounded exponential backoff with full jitter, shared by every adapter."""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from . import interrupt

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base: float = 0.5  # seconds; tests use a few milliseconds
    cap: float = 16.0
    poll_interval: float = 2.0  # between reads of a long-running operation
    poll_timeout: float = 1800.0  # Cloud SQL operations can take many minutes
    consistency_timeout: float = 60.0  # new service accounts become visible within a minute
    report_every: float = 10.0  # progress lines during long waits

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.cap, self.base * (2**attempt)))


@contextlib.contextmanager
def ticking(say: Callable[[str], None], what: str, every: float) -> Iterator[None]:
    """Say how long `what` has been running, every `every` seconds, until it ends."""
    done = threading.Event()
    start = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            say(f"  … {what}: {time.monotonic() - start:.0f}s")

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def retrying(
    fn: Callable[[], T],
    should_retry: Callable[[Exception], bool],
    policy: RetryPolicy,
    what: str,
    attempts: int | None = None,
) -> T:
    """Call fn; on an exception should_retry accepts, sleep and call again, `attempts` times."""
    total = attempts or policy.attempts
    for attempt in range(total):
        try:
            return fn()
        except Exception as exc:
            if attempt == total - 1 or not should_retry(exc):
                raise
            delay = policy.delay(attempt)
            log.info("%s: %s; retrying in %.2fs", what, exc, delay)
            interrupt.sleep(delay)
    raise AssertionError("unreachable")
