"""Run MLflow client code in its own process (this venv's MLflow or another one), as a user's
script would: tracking URI and credentials from the environment, telemetry off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_client(
    script: str,
    tracking_uri: str,
    workdir: Path,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> dict:
    """Run `script` (which prints one JSON object on its last line) and return that object."""
    workdir.mkdir(parents=True, exist_ok=True)
    full_env = {
        "PATH": f"{Path(python).parent}:/usr/bin:/bin",
        "HOME": str(workdir),
        "TMPDIR": str(workdir),
        "LANG": "C.UTF-8",
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
        **{k: v for k, v in os.environ.items() if k in ("SYSTEMROOT",)},
        **(env or {}),
    }
    result = subprocess.run(
        [python, "-c", script],
        env=full_env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"client script failed ({result.returncode}):\n{result.stdout}\n{result.stderr[-6000:]}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
