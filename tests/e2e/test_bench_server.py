"""bench/server.py runs end to end (chart and baseline, every workload) and prints the lines the
issue names. A smoke run: short windows, no assertion on speed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]

SUMMARY = (
    "logmetric_c32_throughput_ratio",
    "logmetric_c32_p99_ratio",
    "logbatch_c32_throughput_ratio",
    "logbatch_c32_p99_ratio",
    "errors",
    "memory_ratio",
)


def test_server_bench_prints_the_summary(helm4: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "bench" / "server.py"),
            # Long enough that every workload completes calls on both sides even on a busy CI
            # machine: with 1 s and no warm-up, a cold server once finished no log-batch call
            # inside the window, and a ratio over zero is nan.
            "--seconds",
            "3",
            "--warmup",
            "2",
            "--helm",
            helm4,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = dict(
        line.split(": ", 1) for line in result.stdout.splitlines() if re.match(r"^\w+: ", line)
    )
    for name in SUMMARY:
        assert name in lines, f"no {name!r} line:\n{result.stdout}"
        assert re.fullmatch(r"\d+(\.\d+)?", lines[name]), f"{name}: {lines[name]!r}"
    assert lines["errors"] == "0", result.stdout
    for side in ("chart", "baseline"):
        assert float(lines[f"{side}_rss_peak_mib"]) > 0, result.stdout
