"""The in-cluster PostgreSQL: StatefulSet, Services, Secret."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest
import yaml

from .modes import DATABASE_MODES
from .render import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    by_kind,
    container,
    get_object,
    render_chart,
    validate_object,
)

PG = f"{FULLNAME}-postgresql"


def statefulset(helm: str, values: dict | None = None) -> dict:
    return get_object(render_chart(helm, values), "StatefulSet", PG)


class TestStatefulSetPostgresql:
    def test_image_and_probes(self, helm):
        c = container(statefulset(helm)["spec"]["template"]["spec"], "postgresql")
        assert c["image"] == "docker.io/library/postgres:17"
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            command = c[probe]["exec"]["command"]
            assert command[0] == "pg_isready"
            assert command[command.index("-U") + 1] == "mlflow"
            assert command[command.index("-d") + 1] == "mlflowdb"
        env = {e["name"]: e for e in c["env"]}
        assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": PG,
                                                                        "key": "password"}
        assert env["POSTGRES_DB"]["value"] == "mlflowdb"
        assert "max_connections=200" in c["args"]

    def test_volume(self, helm):
        sts = statefulset(helm, {"postgresql": {"persistence": {"size": "20Gi",
                                                                "storageClass": "premium-rwo"}}})
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
        assert claim["spec"]["resources"]["requests"]["storage"] == "20Gi"
        assert claim["spec"]["storageClassName"] == "premium-rwo"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        default = statefulset(helm)["spec"]["volumeClaimTemplates"][0]["spec"]
        assert default["resources"]["requests"]["storage"] == "8Gi"
        assert "storageClassName" not in default
        mounts = container(sts["spec"]["template"]["spec"], "postgresql")["volumeMounts"]
        assert {"name": "data", "mountPath": "/var/lib/postgresql/data"} in mounts

    def test_data_survives_uninstall(self, helm):
        assert statefulset(helm)["spec"]["persistentVolumeClaimRetentionPolicy"] == {
            "whenDeleted": "Retain", "whenScaled": "Retain"}

    def test_password_secret_is_kept_and_generated(self, helm):
        secret = get_object(render_chart(helm), "Secret", PG)
        assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        # `lookup` is empty under helm template: only the shape of the new password is checked.
        password = base64.b64decode(secret["data"]["password"]).decode()
        assert len(password) == 32
        assert password.isalnum()

    def test_existing_secret(self, helm):
        objects = render_chart(helm, {"postgresql": {"auth": {"existingSecret": "pg",
                                                              "secretKey": "pw"}}})
        # No PostgreSQL Secret of the chart's own (the one left is the AI Gateway passphrase's).
        assert [s["metadata"]["name"] for s in by_kind(objects, "Secret")] == [
            f"{FULLNAME}-crypto"]
        sts = get_object(objects, "StatefulSet", PG)
        env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pg",
                                                                        "key": "pw"}
        assert "annotations" not in sts["spec"]["template"]["metadata"]

    def test_secret_checksum_same_as_servers(self, helm):
        objects = render_chart(helm)
        sts = get_object(objects, "StatefulSet", PG)
        dep = get_object(objects, "Deployment", FULLNAME)
        # One generated password per render: both pods see the same Secret data.
        assert (sts["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
                == dep["spec"]["template"]["metadata"]["annotations"]["checksum/db-secret"])

    def test_services(self, helm):
        objects = render_chart(helm)
        sts = get_object(objects, "StatefulSet", PG)
        svc = get_object(objects, "Service", PG)
        headless = get_object(objects, "Service", f"{PG}-hl")
        assert sts["spec"]["serviceName"] == f"{PG}-hl"
        assert headless["spec"]["clusterIP"] == "None"
        selector = sts["spec"]["selector"]["matchLabels"]
        assert selector == {"app.kubernetes.io/name": "mlflow",
                            "app.kubernetes.io/instance": "prod",
                            "app.kubernetes.io/component": "postgresql"}
        assert svc["spec"]["selector"] == selector == headless["spec"]["selector"]
        assert svc["spec"]["ports"][0]["port"] == 5432
        assert svc["metadata"]["namespace"] == NAMESPACE

    def test_security(self, helm):
        spec = statefulset(helm)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsUser"] == 999
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = spec["containers"][0]["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert spec["automountServiceAccountToken"] is False

    @pytest.mark.parametrize("mode", [m for m in DATABASE_MODES if not m.startswith("incluster")])
    def test_absent_outside_incluster(self, helm, mode):
        objects = render_chart(helm, DATABASE_MODES[mode])
        assert by_kind(objects, "StatefulSet") == []
        assert [o for o in objects if "postgresql" in o["metadata"]["name"]] == []

    def test_default_connection_budget_fits(self, helm):
        # values.yaml: keep max_connections above replicas x workers x (pool size + overflow),
        # plus the migration Job and the schema waits. The defaults must hold it themselves.
        objects = render_chart(helm)
        dep = get_object(objects, "Deployment", FULLNAME)
        server = container(dep["spec"]["template"]["spec"], "mlflow")
        env = {e["name"]: e.get("value") for e in server["env"]}
        workers = int(next(a for a in server["args"] if a.startswith("--workers=")).split("=")[1])
        per_worker = (int(env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"])
                      + int(env["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"]))
        budget = dep["spec"]["replicas"] * workers * per_worker + 10
        args = container(get_object(objects, "StatefulSet", PG)["spec"]["template"]["spec"],
                         "postgresql")["args"]
        max_connections = int(next(a for a in args if a.startswith("max_connections=")).split(
            "=")[1])
        assert budget <= max_connections, (budget, max_connections)

    def test_image_overrides(self, helm):
        values = {"postgresql": {"image": {"registry": "mirror.example.com",
                                           "repository": "lib/postgres", "tag": "17.2"}}}
        c = container(statefulset(helm, values)["spec"]["template"]["spec"], "postgresql")
        assert c["image"] == "mirror.example.com/lib/postgres:17.2"
        values = {"postgresql": {"image": {"digest": "sha256:" + "b" * 64}}}
        c = container(statefulset(helm, values)["spec"]["template"]["spec"], "postgresql")
        assert c["image"] == "docker.io/library/postgres@sha256:" + "b" * 64

    # ------------------------------------------------- restarts, shutdown, shared memory ---

    @staticmethod
    def _render_copy(helm: str, chart_dir, values: dict) -> dict:
        cmd = [helm, "template", RELEASE, str(chart_dir), "--namespace", NAMESPACE,
               "--values", "-", "--show-only", "templates/statefulset-postgresql.yaml"]
        out = subprocess.run(cmd, input=yaml.safe_dump(values), capture_output=True, text=True,
                             check=True).stdout
        sts = yaml.safe_load(out)
        validate_object(sts)
        return sts

    def test_pod_template_same_across_chart_and_app_versions(self, helm, tmp_path):
        # A changed pod template makes the StatefulSet controller replace the database pod;
        # on a chart upgrade that is the moment the migration Job needs the database. So the
        # template must not depend on Chart.yaml: render this chart and a copy whose version
        # and appVersion are bumped (as a release of the chart would), with the same values.
        bumped = tmp_path / "mlflow"
        shutil.copytree(CHART_DIR, bumped)
        chart = yaml.safe_load((bumped / "Chart.yaml").read_text())
        chart["version"] = "9.8.7"
        chart["appVersion"] = "9.9.9"
        (bumped / "Chart.yaml").write_text(yaml.safe_dump(chart))
        # A named Secret: a generated password is new on each `helm template` (lookup keeps it
        # on a cluster), and its checksum would differ for that reason alone.
        values = {"postgresql": {"auth": {"existingSecret": "pg"}, "podLabels": {"team": "ml"}},
                  "commonLabels": {"env": "prod"}}
        old = self._render_copy(helm, CHART_DIR, values)
        new = self._render_copy(helm, bumped, values)
        # The bump reached the render (object labels carry both versions) ...
        assert old["metadata"]["labels"]["app.kubernetes.io/version"] != "9.9.9"
        assert new["metadata"]["labels"]["app.kubernetes.io/version"] == "9.9.9"
        assert new["metadata"]["labels"]["helm.sh/chart"] == "mlflow-9.8.7"
        # ... and the pod template did not change at all.
        assert new["spec"]["template"] == old["spec"]["template"]
        assert new["spec"]["volumeClaimTemplates"] == old["spec"]["volumeClaimTemplates"]
        labels = old["spec"]["template"]["metadata"]["labels"]
        assert labels == {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "prod",
                          "app.kubernetes.io/component": "postgresql",
                          "app.kubernetes.io/managed-by": "Helm",
                          "app.kubernetes.io/part-of": "mlflow", "env": "prod", "team": "ml"}

    def test_termination_grace(self, helm):
        # The official image's Dockerfile sets STOPSIGNAL SIGINT, PostgreSQL's fast shutdown
        # (https://www.postgresql.org/docs/current/server-shutdown.html): sessions end, then
        # the shutdown checkpoint is written. docker-library/postgres' Dockerfile template
        # notes that the server-start docs find even 90 s "may not be long enough"; Kubernetes'
        # default of 30 s SIGKILLs a checkpoint in progress and the next start replays the WAL.
        assert statefulset(helm)["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"] == 120
        sts = statefulset(helm, {"postgresql": {"terminationGracePeriodSeconds": 300}})
        assert sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 300

    def test_dev_shm_is_memory_backed(self, helm):
        # dynamic_shared_memory_type defaults to posix: parallel query workers share segments
        # in /dev/shm (https://www.postgresql.org/docs/current/runtime-config-resource.html),
        # which the container runtime mounts as a 64 MiB tmpfs; a bigger one is an emptyDir
        # with medium Memory, whose pages count against the pod's memory
        # (https://kubernetes.io/docs/concepts/storage/volumes/#emptydir).
        spec = statefulset(helm, {"postgresql": {"shmSizeLimit": "512Mi"}})["spec"]["template"][
            "spec"]
        shm = next(v for v in spec["volumes"] if v["name"] == "shm")
        assert shm == {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "512Mi"}}
        mounts = container(spec, "postgresql")["volumeMounts"]
        assert {"name": "shm", "mountPath": "/dev/shm"} in mounts
        default = statefulset(helm)["spec"]["template"]["spec"]
        assert next(v for v in default["volumes"] if v["name"] == "shm")["emptyDir"][
            "sizeLimit"] == "256Mi"
