"""bench/server.py runs end to end (chart and baseline, every workload, interleaved rounds)
and prints the lines the issues name (6 and 16). A smoke run: 1-second windows, 2 rounds, no
assertion on speed; --max-loadavg is lifted because the suite itself loads the machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
BENCH = str(REPO_ROOT / "bench" / "server.py")

SUMMARY = (
    "logmetric_c32_throughput_ratio",
    "logmetric_c32_p99_ratio",
    "logbatch_c32_throughput_ratio",
    "logbatch_c32_p99_ratio",
    "errors",
    "memory_ratio",
)
NUMBER = r"\d+(\.\d+)?"


def lines_of(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.splitlines() if re.match(r"^\w+: ", line))


def test_server_bench_prints_medians_spreads_and_clear_ratios(helm4: str) -> None:
    result = subprocess.run(
        # (The two workloads the targets read, at their 32 clients: the format is what is
        # checked; every workload runs in `make bench-server`.)
        [sys.executable, BENCH, "--seconds", "1", "--warmup", "1", "--rounds", "2",
         "--concurrency", "32", "--workloads", "logmetric,logbatch",
         "--max-loadavg", "1000", "--helm", helm4],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = lines_of(result.stdout)
    for name in SUMMARY:
        assert name in lines, f"no {name!r} line:\n{result.stdout}"
        assert re.fullmatch(NUMBER, lines[name]), f"{name}: {lines[name]!r}"
        if name.endswith("_ratio"):
            rounds = lines[f"{name}_rounds"].split()
            assert len(rounds) == 2 and all(re.fullmatch(NUMBER, r) for r in rounds), rounds
            assert re.fullmatch(rf"{NUMBER}-{NUMBER}", lines[f"{name}_ci95"])
            assert re.match(r"(yes|no) \(the 95% interval", lines[f"{name}_clear"])
            # The printed ratio is the median of the rounds' ratios.
            low, high = sorted(float(r) for r in rounds)
            assert abs(float(lines[name]) - (low + high) / 2) < 0.002, (name, rounds)
    assert lines["errors"] == "0", result.stdout
    assert lines["rounds"] == "2"
    assert lines["order"].startswith("chart baseline, each round")
    for side in ("chart", "baseline"):
        assert lines[f"{side}_rounds"] == "2"
        assert float(lines[f"{side}_rss_peak_mib"]) > 0, result.stdout
        for n in (1, 2):  # CPU per request, every round
            for figure in ("server_cpu_ms_per_req", "postgres_cpu_ms_per_req", "rps"):
                assert re.fullmatch(NUMBER, lines[f"{side}_r{n}_logmetric_c32_{figure}"])
        for workload in ("logmetric_c32", "logbatch_c32"):
            assert float(lines[f"{side}_{workload}_window_s"]) >= 1, result.stdout
            assert float(lines[f"{side}_{workload}_rps"]) > 0, result.stdout
            assert re.fullmatch(rf"{NUMBER}-{NUMBER}", lines[f"{side}_{workload}_rps_spread"])
    assert re.fullmatch(NUMBER, lines["loadgen_cpu_pct_max"])
    assert re.fullmatch(r"\d/6 \(on the medians over rounds\)", lines["targets_met"])


def test_sweep_prints_a_table_per_workload(helm4: str) -> None:
    result = subprocess.run(
        [sys.executable, BENCH, "--seconds", "1", "--warmup", "0.5", "--rounds", "1",
         "--sweep", "server.threadLimit=8,40", "--concurrency", "8",
         "--workloads", "logmetric", "--max-loadavg", "1000", "--helm", helm4],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = lines_of(result.stdout)
    assert lines["order"].startswith("threadLimit_8 threadLimit_40")
    assert "baseline_rounds" not in lines
    table = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| server.threadLimit | req/s | p99 s | server CPU ms/req")
    assert table[0].endswith("| req/s ÷ 8's, paired by round (95% interval) |")
    assert [row.split(" | ")[0] for row in table[1:]] == ["| 8", "| 40"]
    # The first value is the reference; with one round there is no interval to give.
    assert table[1].endswith(" | 1 |")
    assert re.search(rf"\| {NUMBER} \(nan-nan\) \|$", table[2]), table[2]
    # Each figure is "median [min-max]", all three to the same digits.
    cells = table[1].split(" | ")
    assert re.fullmatch(r"\d+\.\d \[\d+\.\d-\d+\.\d\]", cells[1]), cells[1]
    assert re.fullmatch(r"\d+\.\d{3} \[\d+\.\d{3}-\d+\.\d{3}\]", cells[2]), cells[2]
    for cpu in cells[3:5]:
        n = rf"\d+\.\d{{{2 if float(cpu.split()[0]) < 10 else 1}}}"
        assert re.fullmatch(rf"{n} \[{n}-{n}\]", cpu), cpu
    assert lines["errors"] == "0"


def test_a_busy_machine_is_refused(helm4: str) -> None:
    result = subprocess.run([sys.executable, BENCH, "--max-loadavg", "0", "--helm", helm4],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "refused: the 1-minute load average is" in result.stdout
    assert "above --max-loadavg 0.00" in result.stdout
    assert "mlflow_version" not in result.stdout  # nothing was measured
