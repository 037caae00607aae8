"""Garbage collection (issue 14, item 6): the chart's gc CronJob pod, run as rendered against
the real MLflow server and PostgreSQL, removes a deleted run's rows and its artifacts, and
nothing else: the live run, its metrics, params, tags and artifact files stay. `mlflow gc`
(MLflow 3.17.2 mlflow/cli): hard-deletes runs in the `deleted` lifecycle stage older than
--older-than, and deletes their artifacts through the artifact repository of the run's
artifact URI (mlflow-artifacts: through the tracking server)."""

from __future__ import annotations

from e2e_client import run_client
from e2e_kube import Pod
from e2e_release import Release

WORKLOAD = r"""
import json, os, tempfile
import mlflow
from mlflow import MlflowClient

mlflow.set_experiment("gc")
ids = {}
for name in ("keep", "drop"):
    with mlflow.start_run(run_name=name) as run:
        mlflow.log_param("p", name)
        mlflow.log_metric("m", 1.0)
        mlflow.set_tag("t", name)
        path = os.path.join(tempfile.mkdtemp(), "weights.txt")
        with open(path, "w") as f:
            f.write(name)
        mlflow.log_artifact(path, artifact_path="out")
        ids[name] = run.info.run_id
MlflowClient().delete_run(ids["drop"])
print(json.dumps({"ids": ids, "experiment": run.info.experiment_id}))
"""


def rows(rel: Release, run_id: str) -> dict[str, int]:
    return {table: rel.db_query(f"SELECT count(*) FROM {table} WHERE run_uuid = '{run_id}'")[0][0]
            for table in ("runs", "params", "metrics", "latest_metrics", "tags")}


def test_gc_removes_the_deleted_run_and_nothing_else(helm4, services, e2e_dir):
    rel = Release(helm4, services, e2e_dir / "gc",
                  values={"gc": {"enabled": True, "olderThan": "0s"}})
    rel.install()
    out = run_client(WORKLOAD, rel.tracking_uri(), rel.workdir / "client")
    keep, drop = out["ids"]["keep"], out["ids"]["drop"]
    artifacts = rel.artifact_dir() / out["experiment"]
    assert (artifacts / drop / "artifacts" / "out" / "weights.txt").is_file()
    kept_rows = rows(rel, keep)
    assert rows(rel, drop)["runs"] == 1 and kept_rows["params"] == 1

    spec = rel.cluster.get("CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    pod = Pod(rel.cluster, spec, "mlflow-gc-29261-k3m9x")
    # The rendered address is the server's Service; this runner has no cluster DNS, so the
    # same URL goes to the server's local port (as the helm test's MLFLOW_TEST_CONNECT_TO).
    rendered = pod.env(pod.container("gc"))["MLFLOW_TRACKING_URI"]
    assert rendered == f"http://{rel.service_host()}"
    process = pod.run(pod.container("gc"), timeout=300,
                      extra_env={"MLFLOW_TRACKING_URI": rel.tracking_uri()})
    log = process.log.read_text()
    assert process.proc.returncode == 0, log
    assert f"Run with ID {drop} has been permanently deleted." in log, log

    assert rows(rel, drop) == {t: 0 for t in kept_rows}
    assert not (artifacts / drop).exists() or not any((artifacts / drop).rglob("*.txt"))
    assert rows(rel, keep) == kept_rows
    assert (artifacts / keep / "artifacts" / "out" / "weights.txt").read_text() == "keep"
    code, output = rel.helm_test()
    assert code == 0, output
