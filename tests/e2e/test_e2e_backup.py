"""The in-cluster PostgreSQL's scheduled backup (issue 14, item 2), its pod run as the CronJob
would run it: the rendered container, with Debian's pg_dump and pg_restore standing in for the
PostgreSQL image's, against the real PostgreSQL holding an MLflow workload. Each run leaves a
custom-format dump that pg_restore restores into a fresh database with every experiment, run,
param, metric and tag (and the runs' artifact locations); only the newest `retention` dumps
stay. pg_dump's custom format and pg_restore --list: PostgreSQL 15 docs, "pg_dump" (-Fc, "the
most flexible output format ... must be restored with pg_restore") and "pg_restore" (-l)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from pathlib import Path

from e2e_client import run_client
from e2e_kube import Pod
from e2e_release import Release

WORKLOAD = r"""
import json
import mlflow
for e in range(2):
    mlflow.set_experiment(f"backed-up-{e}")
    for r in range(3):
        with mlflow.start_run(run_name=f"run-{e}-{r}"):
            mlflow.log_param("lr", str(0.1 * (r + 1)))
            mlflow.set_tag("team", "ml")
            for step in range(5):
                mlflow.log_metric("loss", float(e * 10 + r + step), step=step)
print(json.dumps({"ok": True}))
"""

TABLES = {
    "experiments": "SELECT name, artifact_location FROM experiments ORDER BY name",
    "runs": "SELECT run_uuid, name, status, artifact_uri FROM runs ORDER BY run_uuid",
    "params": "SELECT run_uuid, key, value FROM params ORDER BY run_uuid, key",
    "metrics": "SELECT run_uuid, key, value, step FROM metrics ORDER BY run_uuid, key, step",
    "tags": "SELECT run_uuid, key, value FROM tags ORDER BY run_uuid, key",
}


def filled_release(helm4, services, workdir: Path, backup: dict,
                   **values) -> tuple[Release, str]:
    """A release whose in-cluster database holds the MLflow workload; with its password."""
    rel = Release(helm4, services, workdir,
                  values={"postgresql": {"backup": {"enabled": True, **backup}}, **values})
    rel.migrate("mlflow-migrate-1-first")
    password = rel._migrate_env()["PGPASSWORD"]
    run_client(WORKLOAD, rel.backend_uri(), rel.workdir / "client",
               env={"PGPASSWORD": password})
    return rel, password


def backup_pod(rel: Release) -> tuple[dict, Path]:
    """The CronJob's pod spec, and the local directory of its backup volume."""
    spec = rel.cluster.get("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    claim = next(v for v in spec["volumes"] if v["name"] == "backup")["persistentVolumeClaim"]
    return spec, rel.cluster.pvc_dir(claim["claimName"])


def run_backup(rel: Release, spec: dict, name: str) -> tuple[Pod, str]:
    pod = Pod(rel.cluster, spec, name)
    process = pod.run(pod.container("backup"), timeout=300)
    log = process.log.read_text()
    assert process.proc.returncode == 0, log
    return pod, log


def test_scheduled_backup_dumps_restorably_and_keeps_the_newest(helm4, services, e2e_dir):
    rel, password = filled_release(helm4, services, e2e_dir / "backup", {"retention": 2})
    source = {table: rel.db_query(query) for table, query in TABLES.items()}
    assert len(source["runs"]) == 6 and len(source["metrics"]) == 30

    spec, backups = backup_pod(rel)
    logs = []
    for n in range(3):
        if n:
            time.sleep(1.1)  # dumps are named to the second
        logs.append(run_backup(rel, spec, f"mlflow-postgresql-backup-2926{n}-x8k2p")[1])
    dumps = sorted(p.name for p in backups.iterdir())
    assert len(dumps) == 2, dumps  # retention 2: the first run's dump was deleted
    assert all(d.startswith("mlflowdb-") and d.endswith(".dump") for d in dumps)
    assert "(keeping the newest 2)" in logs[2]
    assert password not in "".join(logs)

    pg = services.postgres
    pg.admin("DROP DATABASE IF EXISTS restored", "CREATE DATABASE restored")
    restore = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "-h", str(pg.socket_dir),
         "-p", str(pg.port), "-U", "postgres", "-d", "restored", str(backups / dumps[-1])],
        capture_output=True, text=True, timeout=300)
    assert restore.returncode == 0, restore.stderr
    restored = {table: pg.query("restored", query) for table, query in TABLES.items()}
    assert restored == source
    version = "SELECT version_num FROM alembic_version"
    assert pg.query("restored", version) == rel.db_query(version)


def documented_restore_command() -> list[str]:
    """pg_restore's argv from the chart README's restore procedure (Backups)."""
    readme = (Path(__file__).resolve().parents[2] / "charts" / "mlflow" / "README.md").read_text()
    block = readme[readme.index("Restore a dump into the release's database"):]
    line = next(x for x in block.splitlines() if "--overrides" in x)
    overrides = json.loads(shlex.split(line.strip())[1])
    return overrides["spec"]["containers"][0]["command"]


def test_the_documented_restore_brings_back_what_was_deleted(helm4, services, e2e_dir):
    """The README's pg_restore arguments, as written, into the release's own database after
    a run was deleted for good (the addresses mapped to the local server, as the pod's are)."""
    rel, password = filled_release(helm4, services, e2e_dir / "restore", {})
    before = {table: rel.db_query(query) for table, query in TABLES.items()}
    spec, backups = backup_pod(rel)
    pod, _ = run_backup(rel, spec, "mlflow-postgresql-backup-29261-q2w4e")
    [dump] = list(backups.iterdir())
    gone = before["runs"][0][0]
    for table in ("metrics", "latest_metrics", "params", "tags"):
        rel.db_query(f"DELETE FROM {table} WHERE run_uuid = '{gone}'")
    rel.db_query(f"DELETE FROM runs WHERE run_uuid = '{gone}'")
    assert len(rel.db_query(TABLES["runs"])) == 5

    argv = documented_restore_command()
    assert argv[0] == "pg_restore"
    argv = [re.sub(r"/backup/mlflowdb-TIME\.dump", str(dump), a) for a in argv]
    argv = [pod.localize(a.replace("FULLNAME", "mlflow"), []) for a in argv]
    restore = subprocess.run(argv, env={"PATH": "/usr/bin:/bin", "PGPASSWORD": password},
                             capture_output=True, text=True, timeout=300)
    assert restore.returncode == 0, restore.stderr
    assert {table: rel.db_query(query) for table, query in TABLES.items()} == before


def test_scheduled_backup_to_gcs_uploads_checked_and_keeps_the_newest(helm4, services, e2e_dir):
    """destination gcs: the dump (init container), then the MLflow image's upload with the
    release's identity (fake-gcs-server here), CRC32C-checked; the oldest beyond retention go."""
    rel, _password = filled_release(helm4, services, e2e_dir / "backup-gcs",
                                    {"retention": 2, "destination": "gcs"},
                                    backups={"gcs": {"bucket": "team-backups"}})
    services.gcs.create_bucket("team-backups")
    source = {table: rel.db_query(query) for table, query in TABLES.items()}
    spec = rel.cluster.get("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    logs = []
    for n in range(3):
        if n:
            time.sleep(1.1)  # dumps are named to the second
        pod = Pod(rel.cluster, spec, f"mlflow-postgresql-backup-2927{n}-g5c2s")
        pod.run_init_containers()
        upload = pod.run(pod.container("upload"), timeout=300)
        assert upload.proc.returncode == 0, upload.output()
        logs.append(upload.output())
    prefix = "mlflow-backups/mlflow/mlflow/scheduled/"
    kept = sorted(o for o in services.gcs.objects("team-backups") if o.startswith(prefix))
    assert len(kept) == 2, kept
    assert re.search(rf"backup: gs://team-backups/{prefix}mlflowdb-\d{{8}}T\d{{6}}Z\.dump, "
                     r"\d+ bytes, verified", logs[0])
    assert f"deleted gs://team-backups/{kept[0].rsplit('/', 1)[0]}/" in logs[2]
    assert "(keeping the newest 2)" in logs[2]

    dump = rel.workdir / "restore.dump"
    dump.write_bytes(services.gcs.download("team-backups", kept[-1]))
    pg = services.postgres
    pg.admin("DROP DATABASE IF EXISTS restored_gcs", "CREATE DATABASE restored_gcs")
    restore = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "-h", str(pg.socket_dir),
         "-p", str(pg.port), "-U", "postgres", "-d", "restored_gcs", str(dump)],
        capture_output=True, text=True, timeout=300)
    assert restore.returncode == 0, restore.stderr
    assert {table: pg.query("restored_gcs", query) for table, query in TABLES.items()} == source
