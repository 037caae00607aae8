"""The pod spec the server, the migration Job and the helm test pod share (templates/_pod.tpl)."""

from __future__ import annotations

import pytest

from .modes import DATABASE_MODES, merge
from .render import FULLNAME, by_kind, get_object, render_chart

NODE_AFFINITY = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
    {"matchExpressions": [{"key": "cloud.google.com/gke-nodepool", "operator": "In",
                           "values": ["ml"]}]}]}}
SERVER_ANTI_AFFINITY = {"requiredDuringSchedulingIgnoredDuringExecution": [{
    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "server"}},
    "topologyKey": "kubernetes.io/hostname"}]}

# Everything a user sets to place and secure MLflow's pods, all at once.
PLACED = {
    "nodeSelector": {"cloud.google.com/gke-nodepool": "ml"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                     "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": NODE_AFFINITY, "podAntiAffinity": SERVER_ANTI_AFFINITY},
    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                   "whenUnsatisfiable": "ScheduleAnyway"}],
    "priorityClassName": "ml-high",
    "imagePullSecrets": ["mirror-pull", "other-pull"],
    "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 2000,
                           "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
    "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                        "seccompProfile": {"type": "RuntimeDefault"}},
}

# The fields _pod.tpl writes for every MLflow pod.
SHARED = ("nodeSelector", "tolerations", "priorityClassName", "imagePullSecrets",
          "securityContext", "enableServiceLinks")


def pod_specs(objects: list[dict]) -> dict[str, dict]:
    """component -> pod spec, for the three MLflow-image pods."""
    test_pod = get_object(objects, "Pod", f"{FULLNAME}-test")
    return {
        "server": get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["spec"],
        "migrate": by_kind(objects, "Job")[0]["spec"]["template"]["spec"],
        "test": test_pod["spec"],
    }


class TestPodSpec:
    @pytest.mark.parametrize("mode", sorted(DATABASE_MODES))
    def test_three_pods_agree(self, helm, mode):
        specs = pod_specs(render_chart(helm, merge(DATABASE_MODES[mode], PLACED)))
        server = specs["server"]
        assert server["nodeSelector"] == PLACED["nodeSelector"]
        assert server["tolerations"] == PLACED["tolerations"]
        assert server["priorityClassName"] == "ml-high"
        assert server["imagePullSecrets"] == [{"name": "mirror-pull"}, {"name": "other-pull"}]
        assert server["securityContext"] == PLACED["podSecurityContext"]
        for component in ("migrate", "test"):
            spec = specs[component]
            for field in SHARED:
                assert spec.get(field) == server.get(field), (component, field)
            assert spec["affinity"]["nodeAffinity"] == server["affinity"]["nodeAffinity"]
        # Every container of the chart's image (and the Cloud SQL Auth Proxy) gets the same
        # container security context, in every pod.
        for component, spec in specs.items():
            for c in spec.get("initContainers", []) + spec["containers"]:
                assert c["securityContext"] == PLACED["securityContext"], (component, c["name"])

    def test_replica_placement_is_the_servers_own(self, helm):
        # Pod (anti-)affinity and spread constraints place server replicas relative to one
        # another. A required anti-affinity to the server copied onto the Job would keep the
        # Job off every node with a server pod, while new server pods wait for the Job.
        specs = pod_specs(render_chart(helm, PLACED))
        assert specs["server"]["affinity"] == PLACED["affinity"]
        assert specs["server"]["topologySpreadConstraints"][0]["maxSkew"] == 1
        for component in ("migrate", "test"):
            assert specs[component]["affinity"] == {"nodeAffinity": NODE_AFFINITY}, component
            assert "topologySpreadConstraints" not in specs[component], component

    def test_pod_affinity_alone_is_not_copied(self, helm):
        specs = pod_specs(render_chart(helm, {"affinity": {"podAntiAffinity":
                                                           SERVER_ANTI_AFFINITY}}))
        assert specs["server"]["affinity"] == {"podAntiAffinity": SERVER_ANTI_AFFINITY}
        assert "affinity" not in specs["migrate"]
        assert "affinity" not in specs["test"]

    def test_defaults_place_nothing(self, helm):
        for component, spec in pod_specs(render_chart(helm)).items():
            for field in ("nodeSelector", "tolerations", "affinity", "priorityClassName",
                          "imagePullSecrets", "topologySpreadConstraints"):
                assert field not in spec, (component, field)

    def test_identity(self, helm):
        values = {"serviceAccount": {"name": "mlflow-sa", "automountServiceAccountToken": True}}
        specs = pod_specs(render_chart(helm, values))
        # The Job migrates with the server's identity (Workload Identity for Cloud SQL IAM).
        assert specs["server"]["serviceAccountName"] == "mlflow-sa"
        assert specs["migrate"]["serviceAccountName"] == "mlflow-sa"
        assert specs["server"]["automountServiceAccountToken"] is True
        assert specs["migrate"]["automountServiceAccountToken"] is True
        # The test pod is a plain HTTP client of the Service: no identity, no API token.
        assert "serviceAccountName" not in specs["test"]
        assert specs["test"]["automountServiceAccountToken"] is False
