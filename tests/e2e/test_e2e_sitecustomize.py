"""The chart's sitecustomize.py (server.threadLimit) against the anyio that MLflow runs on: it
sizes the default thread limiter when asked to and leaves it alone otherwise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
FILES = Path(__file__).resolve().parents[2] / "charts" / "mlflow" / "files"
PROBE = """
import anyio, anyio.to_thread

async def main():
    print(anyio.to_thread.current_default_thread_limiter().total_tokens)

anyio.run(main)
"""


@pytest.mark.parametrize(("limit", "tokens"), [("8", "8"), ("", "40"), ("0", "40")])
def test_thread_limit(limit: str, tokens: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(FILES), "MLFLOW_HELM_THREAD_LIMIT": limit}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == tokens
    assert "not applied" not in result.stderr
