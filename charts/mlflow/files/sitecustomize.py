"""Caps how many Flask requests each MLflow server worker runs at once (`server.threadLimit`).

MLflow 3 serves its Flask app under FastAPI through a WSGI bridge that runs every request in a
thread taken from anyio's default limiter: 40 per worker process, with no MLflow setting for it.
Forty CPU-bound requests in one process fight over Python's GIL, so a request that waits for the
database waits again for the GIL after every round trip, and the slowest calls get much slower.
With fewer threads the other requests wait in the limiter's first-come, first-served queue
instead, and each worker needs fewer database connections (a log-batch call holds two).

The chart mounts this file in the server container and puts its directory on PYTHONPATH, so
every Python process there imports it at start-up. It only changes the limit when
MLFLOW_HELM_THREAD_LIMIT is set; if anyio is not shaped as expected it changes nothing and says
so on stderr: the server then runs with anyio's default.
"""

from __future__ import annotations

import os
import sys


def _install(limit: int) -> None:
    try:
        from anyio._backends._asyncio import AsyncIOBackend

        original = AsyncIOBackend.current_default_thread_limiter.__func__
    except (ImportError, AttributeError) as exc:
        print(f"mlflow-helm: server.threadLimit not applied: {exc!r}", file=sys.stderr)
        return

    def current_default_thread_limiter(cls):
        # The default limiter is created once per event loop; size it on first use.
        limiter = original(cls)
        if limiter.total_tokens != limit:
            limiter.total_tokens = limit
        return limiter

    AsyncIOBackend.current_default_thread_limiter = classmethod(current_default_thread_limiter)


_value = os.environ.get("MLFLOW_HELM_THREAD_LIMIT", "")
if _value.isdigit() and int(_value) > 0:
    _install(int(_value))
