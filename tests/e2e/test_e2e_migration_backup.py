"""The backup before migrating (issue 14, item 1), the migration Job's pod run as a Job runs it:
`backup-plan` (MLflow image), `backup` (the database's client image: Debian's pg_dump and
MariaDB's mysqldump stand in), then `migrate`, against real PostgreSQL, MariaDB and
fake-gcs-server. Each database holds data at MLflow 2.22's schema (written by MLflow 2.22 in
its own virtualenv), so a migration is due and a backup must come first.

Sources: mysqldump ends a complete dump with "-- Dump completed on ..." unless --skip-comments
(MariaDB's client/mysqldump.c, write_footer; MySQL 8.4 reference, "mysqldump", --comments);
--single-transaction dumps InnoDB from one consistent snapshot (same page). GCS's CRC32C check
on upload: google-cloud-storage's Blob.upload_from_filename(checksum="crc32c") compares the
checksum it computed with the object's crc32c the server returns (its docs, "checksum").
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from e2e_client import run_client
from e2e_release import Database, Release, secret

OLD_WORKLOAD = r"""
import json
import mlflow
mlflow.set_experiment("kept")
for r in range(3):
    with mlflow.start_run(run_name=f"run-{r}"):
        mlflow.log_param("lr", str(0.1 * (r + 1)))
        mlflow.set_tag("team", "ml")
        for step in range(4):
            mlflow.log_metric("loss", float(r + step), step=step)
print(json.dumps({"mlflow": mlflow.__version__}))
"""

TABLES = {
    "runs": "SELECT run_uuid, name, status, artifact_uri FROM runs ORDER BY run_uuid",
    "params": "SELECT run_uuid, `key`, value FROM params ORDER BY run_uuid, `key`",
    "metrics": "SELECT run_uuid, `key`, value, step FROM metrics ORDER BY run_uuid, `key`, step",
    "tags": "SELECT run_uuid, `key`, value FROM tags ORDER BY run_uuid, `key`",
}
MYSQL_PASSWORD = "My$(NOT_A_VAR)pw'\"%:e2e"


def fill_with_old_mlflow(rel: Release, old_mlflow: Path) -> str:
    """MLflow 2.22 makes its schema and logs runs, straight into the release's database; returns
    the schema revision it left. PostgreSQL through psycopg2, the driver the 2.22 release
    rendered (test_e2e_upgrade.py says why), with the pods' PGPASSWORD."""
    env = rel._migrate_env()
    uri = env["MLFLOW_BACKEND_STORE_URI"].replace("postgresql+psycopg://",
                                                   "postgresql+psycopg2://")
    password = {"PGPASSWORD": env["PGPASSWORD"]} if "PGPASSWORD" in env else {}
    out = run_client(OLD_WORKLOAD, uri, rel.workdir / "old-client",
                     python=str(old_mlflow / "bin" / "python"), env=password)
    assert out["mlflow"].startswith("2.22.")
    return rel.db_query("SELECT version_num FROM alembic_version")[0][0]


def external_mysql(release_factory, name: str, **values) -> Release:
    return release_factory(
        name,
        values={"database": {"type": "external", "external": {
            "engine": "mysql", "host": "mysql.db.example.internal", "port": 3306,
            "database": "tracking", "user": "tracker", "existingSecret": "mlflow-external-db"}},
            **values},
        extra_objects=[secret("mlflow-external-db", password=MYSQL_PASSWORD)],
        database=Database("mysql", "tracking", "tracker", MYSQL_PASSWORD),
        external_hosts={"mysql.db.example.internal:3306": "mysql"},
    )


def test_mysql_dump_before_migrating_restores_every_row(release_factory, old_mlflow):
    rel = external_mysql(release_factory, "backup-mysql")
    old_revision = fill_with_old_mlflow(rel, old_mlflow)
    before = {table: rel.db_query(query) for table, query in TABLES.items()}
    assert len(before["runs"]) == 3 and len(before["metrics"]) == 12

    rel.migrate()
    pods = rel.migrate_pod.dir
    backup_log = (pods / "backup.log").read_text()
    dump = Path(re.search(r"dumped to (\S+\.sql): \d+ bytes, read back", backup_log).group(1))
    assert dump.name.startswith("tracking-") and f"-from-{old_revision}" in dump.name
    assert dump.read_text().rstrip().splitlines()[-1].startswith("-- Dump completed")
    migrate_log = (pods / "migrate.log").read_text()
    assert f"backup: {dump}, {dump.stat().st_size} bytes, verified" in migrate_log
    new_revision = rel.db_query("SELECT version_num FROM alembic_version")[0][0]
    assert new_revision != old_revision
    # The password reached mysqldump through the 0600 option file only.
    assert MYSQL_PASSWORD not in backup_log + migrate_log
    assert oct((pods / "volumes" / "backup-plan" / "my.cnf").stat().st_mode & 0o777) == "0o600"

    # Restore with the mysql client into a fresh database: the rows as 2.22 left them.
    db = rel.services.mariadb
    db.admin("DROP DATABASE IF EXISTS restored", "CREATE DATABASE restored")
    with open(dump, "rb") as source:
        restore = subprocess.run(
            ["mysql", f"--socket={db.socket}", "-u", "root", "restored"], stdin=source,
            capture_output=True, timeout=300, env={"PATH": "/usr/bin:/bin"})
    assert restore.returncode == 0, restore.stderr.decode()
    assert {t: db.query("restored", q) for t, q in TABLES.items()} == before
    assert db.query("restored", "SELECT version_num FROM alembic_version") == [(old_revision,)]


def test_gcs_destination_uploads_the_checked_dump(release_factory, old_mlflow):
    rel = release_factory("backup-gcs", values={
        "artifacts": {"type": "gcs", "gcs": {"bucket": "team-artifacts"}}})
    old_revision = fill_with_old_mlflow(rel, old_mlflow)
    assert not [c for c in rel.cluster.all("PersistentVolumeClaim")
                if "backups" in c["metadata"]["name"]], "GCS destination: no backup volume"

    rel.migrate()
    pods = rel.migrate_pod.dir
    migrate_log = (pods / "migrate.log").read_text()
    m = re.search(r"backup: (gs://team-artifacts/(\S+)), (\d+) bytes, verified", migrate_log)
    assert m, migrate_log
    name = m.group(2)
    assert re.fullmatch(rf"mlflow-backups/mlflow/mlflow/pre-migration/\d{{4}}-\d\d-\d\d/"
                        rf"mlflowdb-\d{{8}}T\d{{6}}Z-from-{old_revision}\.dump", name), name
    assert name in rel.services.gcs.objects("team-artifacts")
    local = next((pods / "volumes" / "backup" / "pre-migration").glob("*/*.dump"))
    assert rel.services.gcs.download("team-artifacts", name) == local.read_bytes()
    assert int(m.group(3)) == local.stat().st_size
    assert rel.db_query("SELECT location FROM mlflow_helm_backups") == [(m.group(1),)]


def test_no_backup_no_migration(release_factory, old_mlflow):
    """The dump did not happen (here: the backup container never ran): the migration refuses
    before its first statement and the schema stays where it was."""
    rel = release_factory("backup-missing")
    old_revision = fill_with_old_mlflow(rel, old_mlflow)
    pod = rel._migrate_pod()
    plan = pod.run(pod.spec["initContainers"][0], timeout=300)
    assert plan.proc.returncode == 0, plan.output()
    assert "migration due (tracking " in plan.output()
    process = pod.run(pod.container("migrate"), timeout=300)
    assert process.proc.returncode == 1
    assert "no backup, no migration: this migration (tracking " in process.output()
    assert "Nothing was changed." in process.output()
    assert rel.db_query("SELECT version_num FROM alembic_version") == [(old_revision,)]


def test_empty_database_needs_no_backup_and_opting_out_says_so(release_factory, old_mlflow):
    rel = release_factory("backup-empty")
    rel.migrate()
    assert "nothing to back up" in (rel.migrate_pod.dir / "backup.log").read_text()
    assert not list(rel.cluster.pvc_dir("mlflow-backups").rglob("*.dump"))

    off = release_factory("backup-off", values={"migrations": {"backup": {"enabled": False}}})
    assert "initContainers" not in off.job["spec"]["template"]["spec"]
    fill_with_old_mlflow(off, old_mlflow)
    process = off.migrate()
    assert ("WARNING: migrating (tracking " in process.output()
            and "without a backup: migrations.backup.enabled is false" in process.output())


def test_cloudsql_migration_needs_the_backup_taken_for_its_version(release_factory, old_mlflow):
    """Cloud SQL: no dump; the on-demand backup mlflow-helm takes is named in values, for the
    MLflow version that migrates. None, or one taken for another version: refused."""
    def release(name: str, cloud_sql: dict) -> Release:
        return release_factory(name, values={
            "database": {"type": "cloudsql", "cloudsql": {
                "instanceConnectionName": "proj:europe-west1:shared", "engine": "postgres",
                "existingSecret": "mlflow-cloudsql"}},
            "migrations": {"backup": {"cloudSql": cloud_sql}}},
            extra_objects=[secret("mlflow-cloudsql", password="Cl0udSqlPw-e2e")],
            database=Database("postgres", "mlflowdb", "mlflow", "Cl0udSqlPw-e2e", cloudsql=True))

    rel = release("backup-cloudsql", {"backupId": "1733561000000", "mlflowVersion": "3.16.0"})
    init = [c["name"] for c in rel.job["spec"]["template"]["spec"]["initContainers"]]
    assert init == ["cloud-sql-proxy"]
    old_revision = fill_with_old_mlflow(rel, old_mlflow)
    pod = rel._migrate_pod()
    stale = pod.run(pod.container("migrate"), timeout=300)
    assert stale.proc.returncode == 1
    assert ("needs an on-demand backup of Cloud SQL instance proj:europe-west1:shared taken for "
            "MLflow 3.17.2 (the backup named is 1733561000000, taken for MLflow 3.16.0)"
            in stale.output()), stale.output()
    assert "gcloud sql backups create --instance shared" in stale.output()
    assert rel.db_query("SELECT version_num FROM alembic_version") == [(old_revision,)]

    good = release("backup-cloudsql-ok", {"backupId": "1733561999000", "mlflowVersion": "3.17.2"})
    fill_with_old_mlflow(good, old_mlflow)
    process = good.migrate()
    assert ("backup: Cloud SQL backup 1733561999000 of instance proj:europe-west1:shared, "
            "taken for MLflow 3.17.2") in process.output()
    assert good.db_query("SELECT location FROM mlflow_helm_backups") == [
        ("Cloud SQL backup 1733561999000 of instance proj:europe-west1:shared",)]
