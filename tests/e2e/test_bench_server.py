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
            # Short windows: the bench extends each until it holds --min-completed answers (a
            # busy CI machine once saw a cold baseline answer no log-batch call in 3 s, and a
            # ratio over zero answers is nan), so every ratio below is a real figure.
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
        for workload in ("logmetric_c32", "logbatch_c32"):
            assert float(lines[f"{side}_{workload}_window_s"]) >= 3, result.stdout
            assert float(lines[f"{side}_{workload}_rps"]) > 0, result.stdout
