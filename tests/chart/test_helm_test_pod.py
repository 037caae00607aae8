"""The `helm test` pod."""

from __future__ import annotations

import re

from .modes import GCS_DIRECT, GCS_SERVED
from .render import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    by_kind,
    env_of,
    env_value,
    get_object,
    jp,
    render_chart,
)

TEST_POD = f"{FULLNAME}-test"


def helm_test_pod(helm: str, values: dict | None = None) -> dict:
    return get_object(render_chart(helm, values), "Pod", TEST_POD)


class TestHelmTestPod:
    def test_hook_annotations(self, helm):
        pod = helm_test_pod(helm)
        assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
        # Helm 3's action.ReleaseTesting runs the hooks (deleting hook-succeeded pods) before
        # `helm test --logs` calls GetPodLogs, so a hook-succeeded pod's logs are gone; Helm 4
        # defers that deletion until the logs are read. Only before-hook-creation works on both.
        assert pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"] == (
            "before-hook-creation")
        assert pod["spec"]["restartPolicy"] == "Never"

    def test_script_from_configmap(self, helm):
        objects = render_chart(helm)
        pod = get_object(objects, "Pod", TEST_POD)
        (c,) = pod["spec"]["containers"]
        assert c["command"] == ["python", "/opt/mlflow-helm/helm_test.py"]
        assert c["image"] == "ghcr.io/mlflow/mlflow:v3.17.2-full"
        mount = jp("volumeMounts[?name=='scripts'] | [0]", c)
        assert mount["mountPath"] == "/opt/mlflow-helm"
        cm_name = jp("spec.volumes[?name=='scripts'].configMap.name | [0]", pod)
        cm = get_object(objects, "ConfigMap", cm_name)
        assert "helm_test.py" in cm["data"]
        assert cm["data"]["helm_test.py"].strip()

    def test_targets_the_service_dns_name(self, helm):
        c = helm_test_pod(helm)["spec"]["containers"][0]
        assert env_value(c, "MLFLOW_TEST_URL") == (
            f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:5000")
        assert env_value(c, "MLFLOW_TEST_VERSION") == "3.17.2"
        c = helm_test_pod(helm, {"service": {"port": 80}, "server": {"staticPrefix": "/mlflow"}})[
            "spec"]["containers"][0]
        assert env_value(c, "MLFLOW_TEST_URL") == (
            f"http://{FULLNAME}.{NAMESPACE}.svc.cluster.local:80/mlflow")

    def test_url_host_passes_the_host_check(self, helm):
        objects = render_chart(helm, {"service": {"port": 80}})
        url = env_value(get_object(objects, "Pod", TEST_POD)["spec"]["containers"][0],
                        "MLFLOW_TEST_URL")
        host = url.split("/")[2]
        server = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"][
            "containers"][0]
        allowed = next(a for a in server["args"] if a.startswith("--allowed-hosts="))
        assert host in allowed.split("=", 1)[1].split(",")

    def test_artifact_mode(self, helm):
        assert env_value(helm_test_pod(helm)["spec"]["containers"][0],
                         "MLFLOW_TEST_ARTIFACTS") == "served"
        assert env_value(helm_test_pod(helm, GCS_SERVED)["spec"]["containers"][0],
                         "MLFLOW_TEST_ARTIFACTS") == "served"
        assert env_value(helm_test_pod(helm, GCS_DIRECT)["spec"]["containers"][0],
                         "MLFLOW_TEST_ARTIFACTS") == "direct:gs://bucket/path"

    def test_credentials_with_auth(self, helm):
        env = env_of(helm_test_pod(helm, {"auth": {"enabled": True}})["spec"]["containers"][0])
        assert env["MLFLOW_TRACKING_USERNAME"]["value"] == "admin"
        assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULLNAME}-auth", "key": "admin-password"}
        plain = helm_test_pod(helm)["spec"]["containers"][0]
        assert "MLFLOW_TRACKING_PASSWORD" not in env_of(plain)

    def test_security(self, helm):
        spec = helm_test_pod(helm)["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        sc = spec["containers"][0]["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        labels = helm_test_pod(helm)["metadata"]["labels"]
        assert labels["app.kubernetes.io/component"] == "test"

    def test_disabled(self, helm):
        assert by_kind(render_chart(helm, {"tests": {"enabled": False}}), "Pod") == []

    def test_sets_every_variable_the_script_reads(self, helm):
        # helm_test.py and the pod template are two halves of one contract: a variable the
        # script reads but the pod never sets silently falls back to a default.
        script = (CHART_DIR / "files" / "helm_test.py").read_text()
        read = set(re.findall(r"os\.environ(?:\.get)?[\[(]\"(MLFLOW_TEST_[A-Z_]+)\"", script))
        # MLFLOW_TEST_CONNECT_TO is for running the script outside the cluster (e2e tests).
        read.discard("MLFLOW_TEST_CONNECT_TO")
        for values in ({}, GCS_SERVED, GCS_DIRECT):
            env = env_of(helm_test_pod(helm, values)["spec"]["containers"][0])
            missing = sorted(read - set(env))
            assert not missing, f"helm_test.py reads {missing}, the test pod does not set them"
