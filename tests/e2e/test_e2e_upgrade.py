"""Upgrade keeps data: MLflow 2.22 (its own virtualenv) creates and fills the database and the
artifact volume; then the chart's migration Job for 3.17.2 dumps the database first (its backup
init containers, with Debian's pg_dump standing in for the postgres image's), moves the schema,
and the new server serves every run, metric and artifact unchanged. The dump restores into a
fresh database holding every run as 2.22 left it, and the chart with the 2.22 image, as a plain
`helm rollback` would deploy it, refuses the newer schema and names that dump.

Sources: pg_dump's custom format restores with pg_restore (PostgreSQL 15 docs, "pg_dump", -Fc);
an alembic revision missing from the image's migrations is one a newer MLflow wrote (alembic's
ScriptDirectory.get_revision raises CommandError "Can't locate revision").
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from e2e_client import run_client
from e2e_kube import Pod, free_port, render, wait_probe  # noqa: F401
from e2e_services import spawn, stop_process, tail

OLD_WORKLOAD = r"""
import json, os, tempfile
import mlflow
from mlflow import MlflowClient

out = {"mlflow": mlflow.__version__, "runs": {}}
for e in range(2):
    mlflow.set_experiment(f"legacy-{e}")
    for r in range(3):
        with mlflow.start_run(run_name=f"run-{e}-{r}") as run:
            mlflow.log_param("lr", str(0.1 * (r + 1)))
            mlflow.set_tag("generation", "2.22")
            for step in range(4):
                mlflow.log_metric("loss", float(e * 10 + r + step), step=step)
            path = os.path.join(tempfile.mkdtemp(), "weights.txt")
            with open(path, "w") as f:
                f.write(f"weights {e}/{r}")
            mlflow.log_artifact(path, artifact_path="out")
            out["runs"][run.info.run_id] = {
                "name": f"run-{e}-{r}", "lr": str(0.1 * (r + 1)),
                "loss": [float(e * 10 + r + step) for step in range(4)],
                "artifact": f"weights {e}/{r}",
            }
client = MlflowClient()
client.create_registered_model("legacy-model")
first = next(iter(out["runs"]))
client.create_model_version("legacy-model", f"runs:/{first}/out", run_id=first)
print(json.dumps(out))
"""

NEW_READER = r"""
import json, tempfile
import mlflow
from mlflow import MlflowClient

client = MlflowClient()
runs = {}
for exp in client.search_experiments(filter_string="name LIKE 'legacy-%'"):
    for run in client.search_runs([exp.experiment_id]):
        path = client.download_artifacts(run.info.run_id, "out/weights.txt", tempfile.mkdtemp())
        runs[run.info.run_id] = {
            "name": run.info.run_name, "lr": run.data.params["lr"],
            "loss": [m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"),
                                             key=lambda m: m.step)],
            "artifact": open(path).read(),
        }
versions = client.search_model_versions("name='legacy-model'")
print(json.dumps({"mlflow": mlflow.__version__, "runs": runs, "versions": len(versions)}))
"""


def test_upgrade_from_mlflow_2_22_keeps_data(release_factory, old_mlflow: Path) -> None:
    rel = release_factory("upgrade")
    # The release's database and artifact volume, first served by MLflow 2.22.
    port = free_port()
    env = {
        **rel._migrate_env(),
        "HOME": str(rel.workdir),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "PATH": f"{old_mlflow / 'bin'}:/usr/bin:/bin",
    }
    log = rel.workdir / "mlflow-2.22-server.log"
    with open(log, "wb") as out:
        old = spawn(
            [
                str(old_mlflow / "bin" / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                # The release before this chart version rendered psycopg2; MLflow 2.22 also
                # compares integer columns with string parameters, which psycopg 3's server-side
                # binding refuses ("operator does not exist: integer = character varying").
                rel.backend_uri().replace("postgresql+psycopg://", "postgresql+psycopg2://"),
                "--serve-artifacts",
                "--artifacts-destination",
                str(rel.artifact_dir()),
            ],
            env=env,
            stdout=out,
            stderr=out,
            cwd=rel.workdir,
        )
    try:
        _wait_health(old, port, log)
        before = run_client(
            OLD_WORKLOAD,
            f"http://127.0.0.1:{port}",
            rel.workdir / "old-client",
            python=str(old_mlflow / "bin" / "python"),
        )
    finally:
        stop_process(old)
    assert before["mlflow"].startswith("2.22.")
    old_revision = rel.db_query("SELECT version_num FROM alembic_version")[0][0]

    # The new server pod waits on the old schema; the migration Job (3.17.2) then moves it.
    rel.install(migrate_when_waiting=True)
    migrate_log = next((rel.workdir / "pods").glob("mlflow-migrate-*/migrate.log")).read_text()
    wait_log = (rel.server_pod.dir / "wait-for-schema.log").read_text()
    new_revision = rel.db_query("SELECT version_num FROM alembic_version")[0][0]
    assert f"tracking schema at {old_revision}, waiting for {new_revision}" in wait_log, wait_log
    assert new_revision != old_revision
    assert f"{old_revision} -> {new_revision}" in migrate_log, migrate_log

    after = run_client(NEW_READER, rel.tracking_uri(), rel.workdir / "new-client")
    assert after["mlflow"] == "3.17.2"
    assert after["runs"] == before["runs"]
    assert after["versions"] == 1
    code, output = rel.helm_test()
    assert code == 0, output

    # The backup came first: dumped and read back by the backup container, checked by the
    # migration container before its first statement, recorded in the database.
    pods = rel.migrate_pod.dir
    backup_log = (pods / "backup.log").read_text()
    dump = Path(re.search(r"dumped to (\S+\.dump): \d+ bytes, read back", backup_log).group(1))
    assert dump.parent.parent == rel.cluster.pvc_dir("mlflow-backups") / "pre-migration"
    assert re.fullmatch(rf"mlflowdb-\d{{8}}T\d{{6}}Z-from-{old_revision}\.dump", dump.name)
    backup_line = f"backup: {dump}, {dump.stat().st_size} bytes, verified"
    assert backup_line in migrate_log, migrate_log
    assert migrate_log.index(backup_line) < migrate_log.index(f"{old_revision} -> ")
    password = rel._migrate_env()["PGPASSWORD"]
    assert password not in backup_log + migrate_log + (pods / "backup-plan.log").read_text()
    [(location, from_revision)] = rel.db_query(
        "SELECT location, from_revision FROM mlflow_helm_backups")
    assert (location, from_revision) == (str(dump), old_revision)

    # Restore it into a fresh database: every run of 2.22, at 2.22's schema revision.
    pg = rel.services.postgres
    # As the chart README's restore does it: as the release's own user, into its database.
    pg.admin("DROP DATABASE IF EXISTS restored_222", "CREATE DATABASE restored_222 OWNER mlflow")
    restore = subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", "-h", "127.0.0.1", "-p", str(pg.port),
         "-U", "mlflow", "-d", "restored_222", str(dump)],
        env={"PATH": "/usr/bin:/bin", "PGPASSWORD": password},
        capture_output=True, text=True, timeout=300)
    assert restore.returncode == 0, restore.stderr
    assert pg.query("restored_222", "SELECT version_num FROM alembic_version") == [
        (old_revision,)]
    restored_uri = re.sub(r"/mlflowdb$", "/restored_222", env_uri := rel.backend_uri()).replace(
        "postgresql+psycopg://", "postgresql+psycopg2://")
    assert restored_uri != env_uri
    restored = run_client(RESTORED_READER, restored_uri, rel.workdir / "restored-client",
                          python=str(old_mlflow / "bin" / "python"), env={"PGPASSWORD": password})
    assert restored["runs"] == {
        run_id: {"name": run["name"], "lr": run["lr"], "loss": run["loss"], "tag": "2.22",
                 "artifact_uri": live_artifact_uri(rel, run_id)}
        for run_id, run in before["runs"].items()}

    # `helm rollback` to the 2.22 image: its migration Job stops at the first init container,
    # changes nothing and names the backup to restore.
    # (psycopg2: the driver the 2.22 release rendered, as above.)
    old_objects = render(rel.helm, {**rel.values, "image": {"tag": f"v{before['mlflow']}-full"},
                                    "database": {"postgresqlDriver": "psycopg2"}})
    old_job = next(o for o in old_objects if o["kind"] == "Job")
    assert old_job["spec"]["template"]["spec"]["initContainers"][0]["name"] == "backup-plan"
    pod = Pod(rel.cluster, old_job["spec"]["template"]["spec"], "mlflow-migrate-3-r0llb")
    refused = pod.run(pod.spec["initContainers"][0], timeout=300,
                      extra_env={"PATH": f"{old_mlflow / 'bin'}:/usr/bin:/bin"})
    output = refused.output()
    assert refused.proc.returncode == 1, output
    assert f"MLflow {before['mlflow']} (head {old_revision})" in output
    assert (f"the tracking schema is newer than this image: the database is at revision "
            f"{new_revision}") in output
    assert f"restore the backup taken before that upgrade: {dump} (taken " in output
    assert "by the migration of MLflow 3.17.2" in output and "Nothing was changed" in output
    assert rel.db_query("SELECT version_num FROM alembic_version") == [(new_revision,)]


RESTORED_READER = r"""
import json
from mlflow import MlflowClient

client = MlflowClient()
runs = {}
for exp in client.search_experiments(filter_string="name LIKE 'legacy-%'"):
    for run in client.search_runs([exp.experiment_id]):
        runs[run.info.run_id] = {
            "name": run.info.run_name, "lr": run.data.params["lr"],
            "tag": run.data.tags["generation"],
            "loss": [m.value for m in sorted(client.get_metric_history(run.info.run_id, "loss"),
                                             key=lambda m: m.step)],
            "artifact_uri": run.info.artifact_uri,
        }
print(json.dumps({"runs": runs}))
"""


def live_artifact_uri(rel, run_id: str) -> str:
    return rel.db_query(f"SELECT artifact_uri FROM runs WHERE run_uuid = '{run_id}'")[0][0]


def _wait_health(proc, port: int, log: Path, timeout: float = 120) -> None:
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"MLflow 2.22 server exited:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"MLflow 2.22 server not healthy:\n{tail(log)}")
