"""CLI responsiveness: how long `--help` takes, straight and through Helm.

    .venv/bin/python bench/cli.py            # 10 runs each, prints the medians
    .venv/bin/python bench/cli.py --runs 3

Times `mlflow-helm --help` (the console script of this virtualenv) and `helm mlflow-gcp
--help` on Helm 3 and Helm 4 (the plugin installed from plugin/ into a temporary Helm home,
running this interpreter through MLFLOW_HELM_PYTHON). `cli_help_seconds` is the slowest
of the medians; the target is 0.5 s. The CLI imports the Google, Kubernetes and Helm
libraries only in the commands that use them (tests/cli/test_packaging.py checks it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import helm_binary  # noqa: E402


def timed(argv: list[str], env: dict, runs: int) -> float:
    """Median wall time of `runs` runs (after one untimed run that warms the file cache)."""
    times = []
    for i in range(runs + 1):
        start = time.perf_counter()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
        elapsed = time.perf_counter() - start
        if proc.returncode != 0 or "Usage:" not in proc.stdout:
            sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
        if i:
            times.append(elapsed)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    script = Path(sys.executable).parent / "mlflow-helm"
    figures = {"mlflow_helm_help_seconds": timed([str(script), "--help"], dict(os.environ),
                                                 args.runs)}
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        for major in ("3", "4"):
            helm = helm_binary(major)
            home = Path(tmp) / f"helm{major}"
            env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
            env.update(HELM_DATA_HOME=str(home / "data"), HELM_PLUGINS=str(home / "data/plugins"),
                       HELM_CONFIG_HOME=str(home / "config"), HELM_CACHE_HOME=str(home / "cache"),
                       MLFLOW_HELM_PYTHON=sys.executable)
            installed = subprocess.run([helm, "plugin", "install", str(REPO / "plugin")],
                                       env=env, capture_output=True, text=True, timeout=120)
            if installed.returncode != 0:
                sys.exit(f"helm {major} plugin install failed:\n{installed.stderr}")
            figures[f"helm{major}_mlflow_gcp_help_seconds"] = timed(
                [helm, "mlflow-gcp", "--help"], env, args.runs)
            figures[f"helm{major}_version_seconds"] = timed(
                [helm, "version", "--help"], env, args.runs)
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"runs: {args.runs} (median)")
    for name, value in figures.items():
        print(f"{name}: {value:.3f}")
    print(f"cli_help_seconds: {max(v for k, v in figures.items() if 'help' in k):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
