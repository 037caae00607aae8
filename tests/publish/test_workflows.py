"""The GitHub workflows pass actionlint and zizmor (offline) with zero findings; the few
things we promise about them (least privilege, Helm 3 and 4, tag-only release) hold."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT

WORKFLOWS = REPO_ROOT / ".github" / "workflows"


def tool(name: str, package: str) -> str:
    """The venv's copy first (installed by scripts/bootstrap.sh), then PATH; fail if absent."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if os.access(beside, os.X_OK) else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: run scripts/bootstrap.sh (PyPI {package})",
                    pytrace=False)
    return found


def load(name: str) -> dict:
    # PyYAML reads the key `on` as True.
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def test_actionlint_has_no_findings():
    res = subprocess.run([tool("actionlint", "actionlint"), "-no-color",
                          *sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


def test_zizmor_offline_has_no_findings():
    res = subprocess.run([tool("zizmor", "zizmor"), "--offline", "--format", "json",
                          str(WORKFLOWS)], capture_output=True, text=True, cwd=REPO_ROOT,
                         timeout=120)
    findings = json.loads(res.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)[:4000]
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("name", ["lint-test.yaml", "release.yaml"])
def test_least_privilege_and_no_persisted_credentials(name):
    doc = load(name)
    assert doc["permissions"] == {}
    for job_name, job in doc["jobs"].items():
        assert "permissions" in job, f"{job_name} must declare its permissions"
        assert "write-all" not in str(job["permissions"])
        for step in job["steps"]:
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, job_name


def test_lint_test_runs_ct_on_helm_3_and_4_and_the_suites():
    doc = load("lint-test.yaml")
    ct = doc["jobs"]["chart-testing"]
    assert {v.split(".")[0] for v in ct["strategy"]["matrix"]["helm"]} == {"v3", "v4"}
    runs = " ".join(step.get("run", "") for step in ct["steps"])
    assert "ct lint" in runs and "ct install" in runs
    assert any("kind-action" in step.get("uses", "") for step in ct["steps"])
    tests = " ".join(step.get("run", "") for step in doc["jobs"]["pytest"]["steps"])
    assert "scripts/bootstrap.sh" in tests and "make test" in tests


def test_release_runs_on_tags_only_and_publishes_with_oidc():
    doc = load("release.yaml")
    assert set(doc["on"]) == {"push"} and set(doc["on"]["push"]) == {"tags"}
    chart = doc["jobs"]["chart"]
    assert chart["permissions"] == {"contents": "read", "packages": "write"}
    assert "artifacthub.io" in " ".join(step.get("run", "") for step in chart["steps"])
    pypi = doc["jobs"]["pypi"]
    assert pypi["permissions"] == {"id-token": "write"}
    assert any("gh-action-pypi-publish" in step.get("uses", "") for step in pypi["steps"])
