"""The pod spec the server, the migration Job and the helm test pod share (templates/_pod.tpl)."""

from __future__ import annotations

import json

import pytest

from .modes import DATABASE_MODES, merge
from .render import CHART_DIR, FULLNAME, NAMESPACE, RELEASE, by_kind, get_object, render_chart

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
    @pytest.mark.parametrize("template", ["deployment.yaml", "job-migrate.yaml",
                                          "tests/test-mlflow.yaml"])
    def test_objects_take_the_shared_fields_from_the_helper(self, template):
        # The guard against drift itself: the three object files include _pod.tpl once and
        # write none of its fields on their own (a renamed or second copy would fail here).
        text = (CHART_DIR / "templates" / template).read_text()
        assert text.count('include "mlflow.podSpec"') == 1
        for field in ("nodeSelector", "tolerations", "affinity", "topologySpreadConstraints",
                      "priorityClassName", "imagePullSecrets", "podSecurityContext",
                      "serviceAccountName", "enableServiceLinks"):
            assert field not in text, (template, field)

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


# ------------------------------------------------------------------- extension points ---

BUSYBOX = "busybox:1.37"


def extras(prefix: str) -> dict:
    """extraInitContainers/extraContainers/extraVolumes/extraVolumeMounts of one component,
    with templates in them that must be rendered."""
    return {
        "extraInitContainers": [{"name": f"{prefix}-init", "image": BUSYBOX,
                                 "command": ["sh", "-c", "echo {{ .Release.Name }}"]}],
        "extraContainers": [{"name": f"{prefix}-side", "image": BUSYBOX}],
        "extraVolumes": [{"name": f"{prefix}-vol", "configMap": {
            "name": '{{ include "mlflow.fullname" . }}-' + prefix}}],
        "extraVolumeMounts": [{"name": f"{prefix}-vol", "mountPath": f"/{prefix}"}],
    }


EXTRAS = {"server": extras("srv"), "migrations": extras("mig"), "tests": extras("tst"),
          "postgresql": extras("pg")}


def postgresql_spec(objects: list[dict]) -> dict:
    return get_object(objects, "StatefulSet", f"{FULLNAME}-postgresql")["spec"]["template"][
        "spec"]


class TestExtensionPoints:
    @pytest.mark.parametrize(("component", "values_key", "main"), [
        ("server", "server", "mlflow"), ("migrate", "migrations", "migrate"),
        ("test", "tests", "helm-test"), ("postgresql", "postgresql", "postgresql")])
    def test_extra_containers_and_volumes_on_every_pod(self, helm, component, values_key, main):
        objects = render_chart(helm, EXTRAS)
        spec = postgresql_spec(objects) if component == "postgresql" else pod_specs(objects)[
            component]
        prefix = EXTRAS[values_key]["extraContainers"][0]["name"].split("-")[0]
        init = spec["initContainers"][-1]
        # After the chart's own init containers: the Cloud SQL proxy and the schema wait first.
        assert init["name"] == f"{prefix}-init"
        assert init["command"] == ["sh", "-c", f"echo {RELEASE}"]
        assert spec["containers"][0]["name"] == main
        assert [c["name"] for c in spec["containers"][1:]] == [f"{prefix}-side"]
        volume = next(v for v in spec["volumes"] if v["name"] == f"{prefix}-vol")
        assert volume["configMap"]["name"] == f"{FULLNAME}-{prefix}"
        mounts = next(c for c in spec["containers"] if c["name"] == main)["volumeMounts"]
        assert {"name": f"{prefix}-vol", "mountPath": f"/{prefix}"} in mounts
        # Nothing leaks into the other pods.
        everything = json.dumps(objects)
        for other in EXTRAS.values():
            name = other["extraContainers"][0]["name"]
            assert everything.count(f'"{name}"') == 1, name

    def test_extra_init_containers_follow_the_cloudsql_sidecar(self, helm):
        objects = render_chart(helm, merge(DATABASE_MODES["cloudsql-pg-password"], EXTRAS))
        specs = pod_specs(objects)
        assert [c["name"] for c in specs["server"]["initContainers"]] == [
            "cloud-sql-proxy", "wait-for-schema", "srv-init"]
        assert [c["name"] for c in specs["migrate"]["initContainers"]] == [
            "cloud-sql-proxy", "mig-init"]

    def test_defaults_add_nothing(self, helm):
        objects = render_chart(helm)
        specs = pod_specs(objects)
        assert [c["name"] for c in specs["server"]["containers"]] == ["mlflow"]
        assert [c["name"] for c in specs["migrate"]["containers"]] == ["migrate"]
        assert [c["name"] for c in specs["migrate"]["initContainers"]] == ["backup-plan", "backup"]
        assert "initContainers" not in specs["test"]
        assert "initContainers" not in postgresql_spec(objects)

    def test_extra_objects_maps_and_strings_through_tpl(self, helm):
        values = {"extraObjects": [
            {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": '{{ include "mlflow.fullname" . }}-extra'},
             "data": {"namespace": "{{ .Release.Namespace }}"}},
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {{ .Release.Name }}-extra\n"
            "stringData:\n  key: value\n",
        ]}
        objects = render_chart(helm, values)
        cm = get_object(objects, "ConfigMap", f"{FULLNAME}-extra")
        assert cm["data"] == {"namespace": NAMESPACE}
        assert get_object(objects, "Secret", f"{RELEASE}-extra")["stringData"] == {"key": "value"}
        assert not [o for o in render_chart(helm) if o["metadata"]["name"].endswith("-extra")]

    def test_names_of_other_objects_through_tpl(self, helm):
        values = {
            "serviceAccount": {"create": False, "name": "{{ .Release.Name }}-sa"},
            "artifacts": {"persistence": {"existingClaim": "{{ .Release.Name }}-artifacts"}},
            "auth": {"enabled": True, "existingSecret": "{{ .Release.Name }}-auth"},
            "postgresql": {"auth": {"existingSecret": "{{ .Release.Name }}-pg"}},
            "podAnnotations": {"example.com/ns": "{{ .Release.Namespace }}"},
            "migrations": {"podAnnotations": {"example.com/job": "{{ .Release.Name }}"}},
        }
        objects = render_chart(helm, values)
        specs = pod_specs(objects)
        assert specs["server"]["serviceAccountName"] == f"{RELEASE}-sa"
        assert specs["migrate"]["serviceAccountName"] == f"{RELEASE}-sa"
        claim = next(v for v in specs["server"]["volumes"] if v["name"] == "artifacts")
        assert claim["persistentVolumeClaim"]["claimName"] == f"{RELEASE}-artifacts"
        refs = {e["valueFrom"]["secretKeyRef"]["name"]
                for c in specs["server"]["containers"] for e in c["env"]
                if "secretKeyRef" in e.get("valueFrom", {})}
        assert refs >= {f"{RELEASE}-auth", f"{RELEASE}-pg"}
        pg_env = postgresql_spec(objects)["containers"][0]["env"]
        assert next(e for e in pg_env if e["name"] == "POSTGRES_PASSWORD")["valueFrom"][
            "secretKeyRef"]["name"] == f"{RELEASE}-pg"
        server_meta = get_object(objects, "Deployment", FULLNAME)["spec"]["template"]["metadata"]
        assert server_meta["annotations"]["example.com/ns"] == NAMESPACE
        job_meta = by_kind(objects, "Job")[0]["spec"]["template"]["metadata"]
        assert job_meta["annotations"] == {"example.com/ns": NAMESPACE,
                                           "example.com/job": RELEASE}

    @pytest.mark.parametrize("mode", ["incluster", "cloudsql-pg-password"])
    def test_global_image_registry_on_every_image(self, helm, mode):
        mirror = "europe-docker.pkg.dev/my-project/mirror"
        objects = render_chart(helm, merge(DATABASE_MODES[mode],
                                           {"global": {"imageRegistry": mirror}}))
        images = {c["image"] for o in objects for c in _containers(o)}
        assert images, "no containers rendered"
        assert all(i.startswith(mirror + "/") for i in images), images
        # The repository path stays: a mirror keeps upstream's layout.
        assert f"{mirror}/mlflow/mlflow:v3.17.2-full" in images
        expected = (f"{mirror}/library/postgres:17" if mode == "incluster"
                    else f"{mirror}/cloud-sql-connectors/cloud-sql-proxy:2.20.0")
        assert expected in images

    def test_image_registries_by_default(self, helm):
        objects = render_chart(helm, DATABASE_MODES["cloudsql-pg-password"])
        images = {c["image"] for o in objects for c in _containers(o)}
        assert images == {"ghcr.io/mlflow/mlflow:v3.17.2-full",
                          "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.20.0"}

    def test_istio_sidecar_kept_out_of_job_and_test_pod(self, helm):
        # Istio's injector reads the pod label sidecar.istio.io/inject (the annotation of the
        # same name is the older form): "Controlling the injection policy" in
        # https://istio.io/latest/docs/setup/additional-setup/sidecar-injection/. An injected
        # istio-proxy that is not a native sidecar never exits, so neither pod would finish.
        objects = render_chart(helm)
        job_labels = by_kind(objects, "Job")[0]["spec"]["template"]["metadata"]["labels"]
        test_labels = get_object(objects, "Pod", f"{FULLNAME}-test")["metadata"]["labels"]
        assert job_labels["sidecar.istio.io/inject"] == "false"
        assert test_labels["sidecar.istio.io/inject"] == "false"
        server_labels = get_object(objects, "Deployment", FULLNAME)["spec"]["template"][
            "metadata"]["labels"]
        assert "sidecar.istio.io/inject" not in server_labels
        # Users in a mesh with native sidecars turn it back on; podLabels merge, the
        # component's own win.
        values = {"podLabels": {"team": "ml", "sidecar.istio.io/inject": "false"},
                  "migrations": {"podLabels": {"sidecar.istio.io/inject": "true"}},
                  "tests": {"podLabels": {"sidecar.istio.io/inject": "true"}}}
        objects = render_chart(helm, values)
        job_labels = by_kind(objects, "Job")[0]["spec"]["template"]["metadata"]["labels"]
        assert job_labels["sidecar.istio.io/inject"] == "true"
        assert job_labels["team"] == "ml"
        assert get_object(objects, "Pod", f"{FULLNAME}-test")["metadata"]["labels"][
            "sidecar.istio.io/inject"] == "true"


def _containers(obj: dict) -> list[dict]:
    spec = obj.get("spec") or {}
    if "jobTemplate" in spec:  # a CronJob
        spec = spec["jobTemplate"].get("spec") or {}
    pod = spec.get("template", {}).get("spec") if "template" in spec else spec
    if not isinstance(pod, dict):
        return []
    return (pod.get("initContainers") or []) + (pod.get("containers") or [])
