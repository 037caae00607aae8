"""Shared fixtures: where the repository, the chart and the Helm binaries are.

Helm 3 and Helm 4 come from scripts/bootstrap.sh (.tools/helm3/helm, .tools/helm4/helm);
HELM3_BIN / HELM4_BIN point elsewhere. A missing tool fails the test with the fix, never skips.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CHART_DIR = REPO_ROOT / "charts" / "mlflow"
TOOLS = REPO_ROOT / ".tools"

HELM_VERSIONS = ("3", "4")


def helm_binary(major: str) -> str:
    """Path of the Helm binary of one major version; fails with the install hint."""
    from tests.fakes.tools import ToolMissing, find_helm

    try:
        return find_helm(major)
    except ToolMissing as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(params=HELM_VERSIONS, ids=lambda v: f"helm{v}", scope="session")
def helm(request) -> str:
    """Each test that takes `helm` runs once with Helm 3 and once with Helm 4."""
    return helm_binary(request.param)


@pytest.fixture(scope="session")
def helm3() -> str:
    return helm_binary("3")


@pytest.fixture(scope="session")
def helm4() -> str:
    return helm_binary("4")
