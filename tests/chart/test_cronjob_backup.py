"""Scheduled backups of the in-cluster PostgreSQL (issue 14, item 2): a CronJob with the
PostgreSQL image's pg_dump, a volume of its own kept on uninstall, restricted like every pod
(tests/chart/test_pod_security.py renders it in the incluster-backup mode), and reachable
through the NetworkPolicies. What the dump contains, and that it restores, is
tests/e2e/test_e2e_backup.py's. CronJob fields per batch/v1 CronJobSpec (schedule, timeZone,
concurrencyPolicy Forbid: "forbids concurrent runs, skipping next run if previous hasn't
finished yet")."""

from __future__ import annotations

import pytest

from .modes import DATABASE_MODES, merge
from .render import FULLNAME, by_kind, container, env_of, env_value, get_object, render_chart

ON = {"postgresql": {"backup": {"enabled": True}}}
NAME = f"{FULLNAME}-postgresql-backup"
CLAIM = f"{FULLNAME}-backups"  # shared with the migration Job's dumps (templates/pvc-backups.yaml)


def cronjob(objects: list[dict]) -> dict:
    return get_object(objects, "CronJob", NAME)


def pod(job: dict) -> dict:
    return job["spec"]["jobTemplate"]["spec"]["template"]["spec"]


class TestBackupCronJob:
    def test_off_by_default(self, helm):
        objects = render_chart(helm)
        assert by_kind(objects, "CronJob") == []
        # The backup volume is there anyway: the migration Job dumps into it before migrating.
        assert [o["metadata"]["name"] for o in objects if "backup" in o["metadata"]["name"]] == [
            CLAIM]

    @pytest.mark.parametrize("mode", [m for m in DATABASE_MODES if not m.startswith("incluster")])
    def test_only_for_the_in_cluster_database(self, helm, mode):
        objects = render_chart(helm, merge(DATABASE_MODES[mode], ON))
        assert by_kind(objects, "CronJob") == []

    def test_dumps_the_release_database_into_its_own_kept_volume(self, helm):
        objects = render_chart(helm, ON)
        job = cronjob(objects)
        assert job["spec"]["schedule"] == "17 3 * * *"
        assert job["spec"]["concurrencyPolicy"] == "Forbid"
        assert "timeZone" not in job["spec"]
        spec = pod(job)
        assert spec["restartPolicy"] == "Never"
        c = container(spec, "backup")
        assert c["image"] == "docker.io/library/postgres:17"
        script = c["args"][0]
        assert "pg_dump --format=custom" in script and "pg_restore --list" in script
        assert env_value(c, "MLFLOW_BACKUP_URI") == (
            f"postgresql://mlflow@{FULLNAME}-postgresql:5432/mlflowdb")
        assert env_value(c, "MLFLOW_BACKUP_RETENTION") == "7"
        password = env_of(c)["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
        assert password == {"name": f"{FULLNAME}-postgresql", "key": "password"}
        assert {m["mountPath"] for m in c["volumeMounts"]} == {"/backup", "/tmp"}
        claim = get_object(objects, "PersistentVolumeClaim", CLAIM)
        assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
        backup_volume = next(v for v in spec["volumes"] if v["name"] == "backup")
        assert backup_volume["persistentVolumeClaim"]["claimName"] == CLAIM
        # The PostgreSQL pod's identity: uid 999 can read its own dumps back.
        assert spec["securityContext"]["runAsUser"] == 999
        assert spec["securityContext"]["fsGroup"] == 999

    def test_settings(self, helm):
        objects = render_chart(helm, {"postgresql": {"backup": {
            "enabled": True, "schedule": "0 */6 * * *", "timeZone": "Europe/Paris",
            "retention": 28}}, "backups": {"persistence": {"existingClaim": "nfs-backups"}}})
        job = cronjob(objects)
        assert job["spec"]["schedule"] == "0 */6 * * *"
        assert job["spec"]["timeZone"] == "Europe/Paris"
        assert env_value(container(pod(job), "backup"), "MLFLOW_BACKUP_RETENTION") == "28"
        volume = next(v for v in pod(job)["volumes"] if v["name"] == "backup")
        assert volume["persistentVolumeClaim"]["claimName"] == "nfs-backups"
        assert [c for c in by_kind(objects, "PersistentVolumeClaim")
                if "backup" in c["metadata"]["name"]] == []
        # The migration Job's dumps go to the same claim.
        migrate = next(o for o in objects if o["kind"] == "Job")["spec"]["template"]["spec"]
        volume = next(v for v in migrate["volumes"] if v["name"] == "backup")
        assert volume["persistentVolumeClaim"]["claimName"] == "nfs-backups"

    def test_network_policies_let_it_reach_postgresql_only(self, helm):
        objects = render_chart(helm, merge(ON, {"networkPolicy": {"enabled": True}}))
        policies = {p["metadata"]["name"]: p["spec"] for p in by_kind(objects, "NetworkPolicy")}
        backup = policies[f"{FULLNAME}-backup"]
        assert backup["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "backup"
        assert backup["ingress"] == []
        [dns, db] = backup["egress"]
        assert {p["port"] for p in dns["ports"]} == {53}
        assert db["to"][0]["podSelector"]["matchLabels"][
            "app.kubernetes.io/component"] == "postgresql"
        assert db["ports"] == [{"protocol": "TCP", "port": 5432}]
        allowed = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
                   for peer in policies[f"{FULLNAME}-postgresql"]["ingress"][0]["from"]]
        assert allowed == ["server", "migrate", "backup"]

    def test_a_bad_retention_is_refused(self, helm):
        from .render import render_error

        assert "retention" in render_error(helm, {"postgresql": {"backup": {
            "enabled": True, "retention": 0}}})


TO_GCS = merge(ON, {"postgresql": {"backup": {"destination": "gcs"}},
                    "backups": {"gcs": {"bucket": "team-backups"}}})


class TestBackupCronJobToGcs:
    """postgresql.backup.destination=gcs: the dump in an init container, then the MLflow image
    uploads it with the release's Workload Identity (files/db.py upload-backup)."""

    def test_dump_then_upload_as_the_release(self, helm):
        objects = render_chart(helm, merge(TO_GCS, {"nodeSelector": {
            "iam.gke.io/gke-metadata-server-enabled": "true"}}))
        spec = pod(cronjob(objects))
        [dump] = spec["initContainers"]
        assert dump["name"] == "backup" and "pg_dump --format=custom" in dump["args"][0]
        [upload] = spec["containers"]
        assert upload["command"] == [
            "python", "/opt/mlflow-helm/db.py", "upload-backup", "/backup",
            "gs://team-backups/mlflow-backups/mlops/prod/scheduled", "--keep=7"]
        assert upload["image"].startswith("ghcr.io/mlflow/mlflow:")
        assert {"name": "backup", "mountPath": "/backup", "readOnly": True} in \
            upload["volumeMounts"]
        assert spec["serviceAccountName"] == FULLNAME
        assert spec["nodeSelector"] == {"iam.gke.io/gke-metadata-server-enabled": "true"}
        assert next(v for v in spec["volumes"] if v["name"] == "backup") == {
            "name": "backup", "emptyDir": {}}
        assert upload["securityContext"]["readOnlyRootFilesystem"] is True

    def test_with_gcs_artifacts_nothing_needs_the_volume(self, helm):
        values = merge(TO_GCS, {"artifacts": {"type": "gcs", "gcs": {"bucket": "arts"}}})
        objects = render_chart(helm, values)
        assert CLAIM not in [o["metadata"]["name"]
                             for o in by_kind(objects, "PersistentVolumeClaim")]
        assert "gs://team-backups/" in " ".join(
            container(pod(cronjob(objects)), "upload")["command"])

    def test_network_policy_adds_google(self, helm):
        objects = render_chart(helm, merge(TO_GCS, {"networkPolicy": {"enabled": True}}))
        policy = get_object(objects, "NetworkPolicy", f"{FULLNAME}-backup")["spec"]
        ports = [p["port"] for rule in policy["egress"] for p in rule.get("ports", [])]
        assert 443 in ports and 5432 in ports
        peers = [b["ipBlock"]["cidr"] for rule in policy["egress"]
                 for b in rule.get("to", []) if "ipBlock" in b]
        assert peers == ["169.254.169.254/32", "169.254.169.252/32"]

    def test_no_bucket_is_refused(self, helm):
        from .render import render_error

        err = render_error(helm, merge(ON, {"postgresql": {"backup": {"destination": "gcs"}}}))
        assert "the scheduled dumps go to GCS, but no bucket is named" in err
