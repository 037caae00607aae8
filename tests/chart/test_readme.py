"""The chart README's parameter table is generated from values.yaml, and kept in sync."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .render import CHART_DIR, REPO_ROOT

GENERATOR = Path(os.environ.get(
    "README_GENERATOR",
    REPO_ROOT / ".tools" / "node" / "node_modules" / ".bin" / "readme-generator"))
README = CHART_DIR / "README.md"
FIX = ("regenerate it: make docs (readme-generator --values charts/mlflow/values.yaml "
       "--readme charts/mlflow/README.md)")


def generate(readme: Path) -> subprocess.CompletedProcess:
    assert GENERATOR.exists(), f"{GENERATOR} missing: run scripts/bootstrap.sh"
    return subprocess.run(
        [str(GENERATOR), "--values", str(CHART_DIR / "values.yaml"), "--readme", str(readme)],
        capture_output=True, text=True, check=False)


class TestReadme:
    def test_parameters_table_in_sync(self, tmp_path):
        copy = tmp_path / "README.md"
        shutil.copyfile(README, copy)
        proc = generate(copy)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert copy.read_text() == README.read_text(), (
            f"charts/mlflow/README.md's Parameters table is out of date with values.yaml; {FIX}")

    def test_generator_rewrites_a_stale_table(self, tmp_path):
        # The sync test can fail: a README with a parameter row removed is put back.
        lines = README.read_text().splitlines(keepends=True)
        row = next(i for i, line in enumerate(lines) if line.startswith("| `replicaCount`"))
        stale = tmp_path / "README.md"
        stale.write_text("".join(lines[:row] + lines[row + 1:]))
        assert generate(stale).returncode == 0
        assert stale.read_text() == README.read_text()

    def test_every_value_in_the_table(self):
        text = README.read_text()
        assert "## Parameters" in text
        for name in ("database.type", "artifacts.gcs.bucket", "server.allowedHosts.extra",
                     "database.cloudsql.auth", "auth.enabled"):
            assert f"`{name}`" in text, name
