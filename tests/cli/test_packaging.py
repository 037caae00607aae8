"""The wheel carries the chart: `pip install` of the wheel alone is enough."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import CHART_DIR, REPO_ROOT


def build_wheel(out: Path) -> Path:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    if os.path.exists(uv):
        cmd = [uv, "build", "--wheel", "--out-dir", str(out), str(REPO_ROOT)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "-w", str(out), str(REPO_ROOT)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (wheel,) = out.glob("mlflow_helm-*.whl")
    return wheel


def test_wheel_contains_the_chart_and_the_cli_finds_it(tmp_path, helm4):
    wheel = build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    expected = {f"mlflow_helm/chart/{p.relative_to(CHART_DIR)}" for p in CHART_DIR.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts}
    assert expected <= set(names), sorted(expected - set(names))[:5]
    assert "mlflow_helm/cli.py" in names
    # Unpacked on its own (no checkout on the path), the package finds its chart.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "from mlflow_helm.chart import bundled_chart; print(bundled_chart())"
    found = subprocess.run([sys.executable, "-c", code], env={**os.environ,
                           "PYTHONPATH": str(site)}, cwd=tmp_path, check=True,
                           capture_output=True, text=True).stdout.strip()
    assert found == str(site / "mlflow_helm" / "chart")
    lint = subprocess.run([helm4, "lint", found], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    # The plugin's install hook installing a wheel (with its dependencies, the real pip
    # path) is tests/cli/test_plugin_pip.py.

HEAVY = ("google", "googleapiclient", "kubernetes", "pyhelm3", "yaml", "requests", "httplib2")


def test_help_imports_no_cloud_or_cluster_library():
    """`--help` must answer fast (bench/cli.py measures it): the Google, Kubernetes and Helm
    libraries are imported inside the commands that use them, never at import time."""
    code = (
        "import sys\n"
        "from mlflow_helm.cli import main\n"
        "try:\n"
        "    main(['install', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(' '.join(sorted(m for m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    loaded = out.stdout.split()
    assert "Usage: " in out.stdout
    heavy = sorted({m for m in loaded if m.split(".")[0] in HEAVY})
    assert heavy == [], heavy
