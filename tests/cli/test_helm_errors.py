"""Helm's answers told apart: only Helm's own "release: not found" means the release is
absent (pkg/storage/driver ErrReleaseNotFound, the same text in Helm 3 and 4: the string is
in both binaries); any other "not found" is a failure to report, not a fresh install."""

from __future__ import annotations

import os
import stat

import pytest

from mlflow_helm.errors import HelmFailed
from mlflow_helm.helm import Helm

KUBE_AUTH = ('Error: Kubernetes cluster unreachable: Get "https://10.0.0.1/version": '
             'getting credentials: exec: executable file not found in $PATH')


def helm_that_fails(tmp_path, stderr: str) -> str:
    """A helm on PATH that is the real one for `version` and fails like Helm otherwise."""
    script = tmp_path / "helm"
    script.write_text(f"""#!/bin/sh
if [ "$1" = version ]; then exec "$REAL_HELM" "$@"; fi
echo '{stderr}' >&2
exit 1
""")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_missing_executable_is_not_a_missing_release(world, tmp_path):
    helm = Helm(helm_that_fails(tmp_path, KUBE_AUTH), "", str(world.kubeconfig), "5m")
    with pytest.raises(HelmFailed) as err:
        helm.release("mlflow", "mlflow")
    assert "executable file not found" in str(err.value)


def test_helms_release_not_found_is_an_absent_release(world, tmp_path):
    helm = Helm(helm_that_fails(tmp_path, "Error: release: not found"), "",
                str(world.kubeconfig), "5m")
    assert os.environ["REAL_HELM"]
    assert helm.release("mlflow", "mlflow") is None
