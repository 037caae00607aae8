"""The backup before migrating, as rendered (issue 14, item 1): which init containers the
migration Job gets in each database mode, where the dump goes, and what the migration container
is told to check. That the dump is taken, restores, and that the migration refuses without it:
tests/e2e/test_e2e_migration_backup.py and test_e2e_upgrade.py, with the real databases."""

from __future__ import annotations

import pytest

from .modes import CLOUDSQL_MODES, DATABASE_MODES, GCS_SERVED, merge
from .render import (
    FULLNAME,
    NAMESPACE,
    RELEASE,
    by_kind,
    container,
    env_of,
    env_value,
    render_chart,
)

CLAIM = f"{FULLNAME}-backups"


def migrate_spec(objects: list[dict]) -> dict:
    [job] = by_kind(objects, "Job")
    return job["spec"]["template"]["spec"]


def volume(spec: dict, name: str) -> dict:
    return next(v for v in spec["volumes"] if v["name"] == name)


def claims(objects: list[dict]) -> list[str]:
    return [o["metadata"]["name"] for o in by_kind(objects, "PersistentVolumeClaim")]


class TestMigrationBackup:
    def test_default_dumps_into_the_backup_volume(self, helm):
        objects = render_chart(helm)
        spec = migrate_spec(objects)
        plan, dump = spec["initContainers"]
        assert plan["command"][:3] == ["python", "/opt/mlflow-helm/db.py", "backup-plan"]
        assert plan["image"] == container(spec, "migrate")["image"]
        assert dump["image"] == "docker.io/library/postgres:17"
        assert dump["command"] == ["sh", "/opt/mlflow-helm/backup.sh", "/backup-plan",
                                   "/backup/pre-migration"]
        migrate = container(spec, "migrate")
        assert env_value(migrate, "MLFLOW_BACKUP_MODE") == "dump"
        assert env_value(migrate, "MLFLOW_BACKUP_DESTINATION") == "/backup/pre-migration"
        # The plan holds the password files: memory only, and read-only for the migration.
        assert volume(spec, "backup-plan")["emptyDir"]["medium"] == "Memory"
        assert {"name": "backup-plan", "mountPath": "/backup-plan", "readOnly": True} in \
            migrate["volumeMounts"]
        assert volume(spec, "backup")["persistentVolumeClaim"]["claimName"] == CLAIM
        assert CLAIM in claims(objects)
        # The client container gets no database environment: the plan's files say it all.
        assert not [e for e in dump.get("env", []) if "PASSWORD" in e["name"]]
        for c in (plan, dump):
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False

    def test_gcs_artifacts_send_the_dump_to_the_bucket(self, helm):
        objects = render_chart(helm, GCS_SERVED)
        spec = migrate_spec(objects)
        migrate = container(spec, "migrate")
        assert env_value(migrate, "MLFLOW_BACKUP_DESTINATION") == (
            f"gs://bucket/mlflow-backups/{NAMESPACE}/{RELEASE}/pre-migration")
        assert volume(spec, "backup") == {"name": "backup", "emptyDir": {}}
        assert CLAIM not in claims(objects)

    def test_bucket_prefix_and_destination_are_settings(self, helm):
        values = merge(GCS_SERVED, {"backups": {
            "gcs": {"bucket": "team-backups", "prefix": "/db/dumps/"}}})
        migrate = container(migrate_spec(render_chart(helm, values)), "migrate")
        assert env_value(migrate, "MLFLOW_BACKUP_DESTINATION") == (
            f"gs://team-backups/db/dumps/{NAMESPACE}/{RELEASE}/pre-migration")
        to_volume = merge(GCS_SERVED, {"migrations": {"backup": {"destination": "volume"}}})
        objects = render_chart(helm, to_volume)
        assert env_value(container(migrate_spec(objects), "migrate"),
                         "MLFLOW_BACKUP_DESTINATION") == "/backup/pre-migration"
        assert CLAIM in claims(objects)

    @pytest.mark.parametrize("mode,image", [
        ("external-pg", "docker.io/library/postgres:17"),
        ("external-mysql", "docker.io/library/mysql:8.4"),
        ("external-uri", "docker.io/library/postgres:17"),
    ])
    def test_external_databases_use_their_engines_client(self, helm, mode, image):
        spec = migrate_spec(render_chart(helm, DATABASE_MODES[mode]))
        assert spec["initContainers"][1]["image"] == image
        # backup-plan reads the same database settings as the migration.
        plan_env = {k: v for k, v in env_of(spec["initContainers"][0]).items()
                    if k != "MLFLOW_BACKUP_PLAN_DIR"}
        migrate_env = env_of(container(spec, "migrate"))
        assert all(migrate_env[k] == v for k, v in plan_env.items())

    def test_client_images_are_settings(self, helm):
        values = merge(DATABASE_MODES["external-mysql"], {
            "global": {"imageRegistry": "mirror.example"},
            "migrations": {"backup": {"mysqlImage": {"repository": "team/mysql",
                                                     "tag": "8.0.40"}}}})
        spec = migrate_spec(render_chart(helm, values))
        assert spec["initContainers"][1]["image"] == "mirror.example/team/mysql:8.0.40"

    @pytest.mark.parametrize("mode", list(CLOUDSQL_MODES))
    def test_cloudsql_checks_the_named_on_demand_backup(self, helm, mode):
        values = merge(CLOUDSQL_MODES[mode], {"migrations": {"backup": {"cloudSql": {
            "backupId": 1733561999000, "mlflowVersion": "3.17.2"}}}})
        objects = render_chart(helm, values)
        spec = migrate_spec(objects)
        assert [c["name"] for c in spec["initContainers"]] == ["cloud-sql-proxy"]
        migrate = container(spec, "migrate")
        assert env_value(migrate, "MLFLOW_BACKUP_MODE") == "cloudsql"
        assert env_value(migrate, "MLFLOW_BACKUP_CLOUDSQL_ID") == "1733561999000"
        assert env_value(migrate, "MLFLOW_BACKUP_CLOUDSQL_FOR") == "3.17.2"
        instance = values["database"]["cloudsql"]["instanceConnectionName"]
        assert env_value(migrate, "MLFLOW_BACKUP_CLOUDSQL_INSTANCE") == instance
        assert CLAIM not in claims(objects)

    def test_a_new_backup_makes_a_new_migration_job(self, helm):
        # A Job's pod template is immutable: another backup is another Job (mlflow.migrateJobName).
        base = CLOUDSQL_MODES["cloudsql-pg-password"]
        names = {by_kind(render_chart(helm, merge(base, {"migrations": {"backup": {"cloudSql": {
            "backupId": backup_id, "mlflowVersion": "3.17.2"}}}})), "Job")[0]["metadata"]["name"]
            for backup_id in ("1", "2")}
        assert len(names) == 2

    def test_opting_out(self, helm):
        objects = render_chart(helm, {"migrations": {"backup": {"enabled": False}}})
        spec = migrate_spec(objects)
        assert "initContainers" not in spec
        assert env_value(container(spec, "migrate"), "MLFLOW_BACKUP_MODE") == "off"
        assert CLAIM not in claims(objects)
        # Scheduled dumps keep the volume, and the Job still mounts it (pvc-backups.yaml: why).
        scheduled = render_chart(helm, {"migrations": {"backup": {"enabled": False}},
                                        "postgresql": {"backup": {"enabled": True}}})
        assert volume(migrate_spec(scheduled), "backup")["persistentVolumeClaim"] == {
            "claimName": CLAIM}

    def test_gcs_without_a_bucket_is_refused(self, helm):
        from .render import render_error

        err = render_error(helm, {"migrations": {"backup": {"destination": "gcs"}}})
        assert ("the dumps before migrating go to GCS, but no bucket is named: set "
                "backups.gcs.bucket (or artifacts.gcs.bucket)") in err
