"""Two changes to MLflow's server workers that MLflow has no setting for: a cap on the Flask
requests each runs at once (`server.threadLimit`), and warm workers (`server.warmup`, below).

MLflow 3 serves its Flask app under FastAPI through a WSGI bridge that runs every request in a
thread taken from anyio's default limiter: 40 per worker process, with no MLflow setting for it.
Forty CPU-bound requests in one process fight over Python's GIL, so a request that waits for the
database waits again for the GIL after every round trip, and the slowest calls get much slower.
With fewer threads the other requests wait in the limiter's first-come, first-served queue
instead, and each worker needs fewer database connections (a log-batch call holds two).

The chart mounts this file in the server container and puts its directory on PYTHONPATH, so
every Python process there imports it at start-up. It only changes the limit when
MLFLOW_HELM_THREAD_LIMIT is set (and warms workers when MLFLOW_HELM_WARMUP=true); if anyio
(or uvicorn) is not shaped as expected it changes nothing and says so on stderr: the server
then runs with anyio's default (and cold workers).
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


# --- Warm workers (`server.warmup`) ------------------------------------------------------------
#
# MLflow 3.17.2 builds its tracking and model registry stores on the first tracking call
# (mlflow/server/handlers.py `_get_tracking_store`, `_get_model_registry_store`: module globals
# filled lazily) and `/health` touches neither, so a worker answers `/health` long before its
# first real request, which pays the imports, the engine, the schema check and the first
# connection. uvicorn loads the app in each worker (uvicorn/server.py `_serve` calls
# `Config.load()`), then runs the lifespan, then starts accepting on the shared socket; so the
# stores are built right after `Config.load()`: a worker accepts no request before it is warm.
# Each warm worker leaves a marker `<dir>/<boot id>/<pid>`; MLflow gives every worker of one
# `mlflow server` the same `_MLFLOW_SERVER_BOOT_ID` (mlflow/server/__init__.py `_run_server`),
# so markers of a restarted container (whose PIDs start over) never count. The readiness path
# answers 200 only when MLFLOW_HELM_WORKERS live workers have a marker.


def _warm_dir() -> str:
    root = os.environ.get("MLFLOW_HELM_WARM_DIR", "/tmp/mlflow-helm-warm")
    return os.path.join(root, os.environ.get("_MLFLOW_SERVER_BOOT_ID", "") or "default")


def _warm_workers() -> int:
    try:
        names = os.listdir(_warm_dir())
    except FileNotFoundError:
        return 0
    live = 0
    for name in names:
        try:
            os.kill(int(name), 0)
            live += 1
        except (ValueError, ProcessLookupError, PermissionError):
            continue
    return live


def _warm_up() -> None:
    """Build the stores and query the database, as the first tracking call would."""
    from mlflow.server import ARTIFACTS_DESTINATION_ENV_VAR, handlers

    tracking = handlers._get_tracking_store()
    registry = handlers._get_model_registry_store()
    tracking.search_experiments(max_results=1)
    registry.search_registered_models(max_results=1)
    if os.environ.get(ARTIFACTS_DESTINATION_ENV_VAR):
        handlers._get_artifact_repo_mlflow_artifacts()


def _mark_warm(started: float) -> None:
    import time

    os.makedirs(_warm_dir(), exist_ok=True)
    with open(os.path.join(_warm_dir(), str(os.getpid())), "w") as marker:
        marker.write(f"{time.time()}\n")
    print(f"mlflow-helm: worker {os.getpid()} warm (stores built, database reached) in "
          f"{time.monotonic() - started:.2f}s", file=sys.stderr, flush=True)


def _warm_or_retry() -> None:
    import threading
    import time

    started = time.monotonic()
    try:
        _warm_up()
    except Exception as exc:  # the database may be restarting: serve, stay unready, retry
        print(f"mlflow-helm: worker {os.getpid()} warm-up failed, retrying every 5s: {exc!r}",
              file=sys.stderr, flush=True)

        def retry() -> None:
            while True:
                time.sleep(5)
                try:
                    _warm_up()
                except Exception:
                    continue
                _mark_warm(started)
                return

        threading.Thread(target=retry, name="mlflow-helm-warmup", daemon=True).start()
        return
    _mark_warm(started)


class _Ready:
    """ASGI wrapper answering the readiness path itself (before MLflow's host check and auth,
    which a kubelet probe by pod IP need not pass); everything else goes to MLflow."""

    def __init__(self, app, path: str, workers: int) -> None:
        self.app, self.path, self.workers = app, path, workers

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != self.path:
            return await self.app(scope, receive, send)
        warm = _warm_workers()
        ok = warm >= self.workers
        body = f"{'ready' if ok else 'warming'}: {warm}/{self.workers} workers warm\n".encode()
        await send({"type": "http.response.start", "status": 200 if ok else 503,
                    "headers": [(b"content-type", b"text/plain"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _patch_uvicorn_config(module) -> None:
    original = module.Config.load

    def load(self) -> None:
        original(self)
        _warm_or_retry()
        path = os.environ.get("MLFLOW_HELM_READY_PATH", "")
        if path:
            self.loaded_app = _Ready(self.loaded_app, path,
                                     int(os.environ.get("MLFLOW_HELM_WORKERS", "1") or 1))

    module.Config.load = load


class _AfterImport:
    """A meta path finder that runs `callback(module)` once `name` has been imported: uvicorn
    is imported only by the server's own processes, never by this file's other users."""

    def __init__(self, name: str, callback) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        import importlib.machinery

        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            print(f"mlflow-helm: server.warmup not applied: {fullname} not found",
                  file=sys.stderr)
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module) -> None:
            exec_module(module)
            try:
                self.callback(module)
            except AttributeError as exc:
                print(f"mlflow-helm: server.warmup not applied: {exc!r}", file=sys.stderr)

        spec.loader.exec_module = exec_and_patch
        return spec


if os.environ.get("MLFLOW_HELM_WARMUP") == "true":
    sys.meta_path.insert(0, _AfterImport("uvicorn.config", _patch_uvicorn_config))
