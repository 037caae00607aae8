"""NOTES.txt: how to reach the server and where the credentials are.

`helm template` never renders NOTES.txt; `helm install --dry-run=client` does. Helm 4 does that
offline, Helm 3 still asks an API server for its version and REST mappings, so both are pointed
at a loopback discovery fake (fake_discovery.py). Nothing is installed: it is a client dry run.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

from .fake_discovery import FakeDiscovery
from .render import CHART_DIR, FULLNAME, NAMESPACE, RELEASE


@pytest.fixture(scope="session")
def discovery():
    with tempfile.TemporaryDirectory() as tmp, FakeDiscovery(Path(tmp)) as fake:
        yield fake


@functools.cache
def _notes(helm: str, kubeconfig: str, values_json: str) -> str:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "HOME": home, "HELM_CONFIG_HOME": home, "HELM_CACHE_HOME": home,
               "HELM_DATA_HOME": home, "KUBECONFIG": kubeconfig}
        proc = subprocess.run(
            [helm, "install", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE,
             "--dry-run=client", "--disable-openapi-validation", "--values", "-"],
            input=values_json, capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "\nNOTES:\n" in proc.stdout, proc.stdout[-2000:]
    return proc.stdout.split("\nNOTES:\n", 1)[1]


def notes(helm: str, discovery: FakeDiscovery, values: dict | None = None) -> str:
    return _notes(helm, str(discovery.kubeconfig), json.dumps(values or {}, sort_keys=True))


class TestNotes:
    def test_port_forward(self, helm, discovery):
        text = notes(helm, discovery)
        assert f"kubectl -n {NAMESPACE} port-forward svc/{FULLNAME} 5000:5000" in text
        assert "export MLFLOW_TRACKING_URI=http://localhost:5000\n" in text
        assert f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:5000" in text

    def test_port_forward_follows_service_port_and_prefix(self, helm, discovery):
        text = notes(helm, discovery, {"service": {"port": 80},
                                       "server": {"staticPrefix": "/mlflow"}})
        assert f"port-forward svc/{FULLNAME} 5000:80" in text
        assert "export MLFLOW_TRACKING_URI=http://localhost:5000/mlflow" in text
        assert f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:80/mlflow" in text

    def test_migration_job_and_helm_test(self, helm, discovery):
        text = notes(helm, discovery)
        assert re.search(rf"logs job/{FULLNAME}-migrate-[0-9a-f]{{10}}\n", text), text
        assert f"helm test {RELEASE} -n {NAMESPACE} --logs" in text
        # The test pod is kept (before-hook-creation only), so its log is still there.
        assert f"kubectl -n {NAMESPACE} logs {FULLNAME}-test" in text

    def test_no_helm_test_when_tests_are_off(self, helm, discovery):
        text = notes(helm, discovery, {"tests": {"enabled": False}})
        assert "helm test" not in text and f"{FULLNAME}-test" not in text

    def test_database_password(self, helm, discovery):
        text = notes(helm, discovery)
        assert (f"kubectl -n {NAMESPACE} get secret {FULLNAME}-postgresql "
                "-o jsonpath='{.data.password}' | base64 -d") in text

    def test_auth_credentials(self, helm, discovery):
        text = notes(helm, discovery, {"auth": {"enabled": True}})
        assert (f"kubectl -n {NAMESPACE} get secret {FULLNAME}-auth "
                "-o jsonpath='{.data.admin-password}' | base64 -d") in text
        assert "MLFLOW_TRACKING_USERNAME=admin" in text
        assert "Basic authentication" not in notes(helm, discovery)

    def test_node_port(self, helm, discovery):
        text = notes(helm, discovery, {"service": {"type": "NodePort"}})
        assert f"get svc {FULLNAME} -o jsonpath='{{.spec.ports[0].nodePort}}'" in text
        assert "nodePort" not in notes(helm, discovery)

    def test_gcs(self, helm, discovery):
        values = {"artifacts": {"type": "gcs", "serve": False,
                                "gcs": {"bucket": "bucket", "path": "/p/"}}}
        assert "Artifacts: gs://bucket/p (clients write to the bucket directly)" in notes(
            helm, discovery, values)


class TestNotesCryptoKek:
    def test_names_the_passphrase_secret(self, helm, discovery):
        text = notes(helm, discovery)
        assert (f"AI Gateway secrets: encrypted with the passphrase in Secret {FULLNAME}-crypto "
                "(generated, kept by `helm uninstall`)") in text
        own = notes(helm, discovery, {"server": {"cryptoKek": {"existingSecret": "team-kek"}}})
        assert "passphrase in Secret team-kek. Back it up" in own
        off = notes(helm, discovery, {"server": {"cryptoKek": {"enabled": False}}})
        assert "AI Gateway secrets" not in off
