"""The chart with no values, installed once for this module: the Host check as clients reach the
server, a real MLflow client workload, and the migration step run again (it must change nothing)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import pytest
from e2e_client import run_client
from e2e_kube import POD_IP, http_get
from e2e_release import Release, Services

API = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"


@pytest.fixture(scope="module")
def release(helm4: str, services: Services):
    workdir = Path(tempfile.mkdtemp(prefix="mlflow-e2e-default-"))
    workdir.chmod(0o755)
    rel = Release(helm4, services, workdir / "release")
    try:
        rel.install()
        yield rel
    finally:
        rel.stop()
        import shutil

        shutil.rmtree(workdir, ignore_errors=True)


def test_helm_test_passes(release: Release) -> None:
    code, output = release.helm_test()
    assert code == 0, f"{output}\n{release.logs()}"
    assert "ok    host check (Host mlflow.mlflow.svc.cluster.local:5000 accepted)" in output


def test_server_runs_the_rendered_settings(release: Release) -> None:
    env = release.server_env()
    assert env["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://mlflow@127.0.0.1:")
    assert "--workers=2" in release.server_args()


def test_every_worker_is_warm_before_it_serves(release: Release) -> None:
    """server.warmup: each uvicorn worker builds MLflow's stores and queries the database
    right after uvicorn loads the app (files/sitecustomize.py), which is before uvicorn logs
    "Started server process [pid]" and starts accepting (uvicorn/server.py `_serve`), and the
    readiness path counts the warm workers."""
    log = release.server.output()
    warm = re.findall(r"mlflow-helm: worker (\d+) warm \(stores built, database reached\)", log)
    assert len(set(warm)) == 2, log[-3000:]
    for pid in warm:
        assert log.index(f"worker {pid} warm") < log.index(f"Started server process [{pid}]")
    probe = release.server_pod.container("mlflow")["readinessProbe"]["httpGet"]
    assert probe["path"] == "/health/ready"
    status, body = http_get(release.port, probe["path"], f"{POD_IP}:5000")
    assert (status, body) == (200, b"ready: 2/2 workers warm\n")


ACCEPTED_HOSTS = [
    # Each DNS form of the Service, with and without its port.
    "mlflow",
    "mlflow:5000",
    "mlflow.mlflow",
    "mlflow.mlflow:5000",
    "mlflow.mlflow.svc",
    "mlflow.mlflow.svc:5000",
    "mlflow.mlflow.svc.cluster.local",
    "mlflow.mlflow.svc.cluster.local:5000",
    "localhost:5000",  # kubectl port-forward
    f"{POD_IP}:5000",  # clients by pod IP
]
FOREIGN_HOSTS = [
    "evil.example.com",
    "evil.example.com:5000",
    "mlflow.other-ns.svc.cluster.local:5000",
]


def test_hosts_clients_use_are_accepted(release: Release) -> None:
    wrong = {}
    for host in ACCEPTED_HOSTS:
        status, body = release.get(API, host=host)
        if status != 200 or json.loads(body)["experiment"]["name"] != "Default":
            wrong[host] = f"HTTP {status} {body[:200]!r}"
    assert not wrong, wrong


def test_foreign_hosts_are_rejected(release: Release) -> None:
    wrong = {}
    for host in FOREIGN_HOSTS:
        status, body = release.get(API, host=host)
        if status != 403 or b"Invalid Host header" not in body:
            wrong[host] = f"HTTP {status} {body[:200]!r}"
    assert not wrong, wrong


CLIENT_WORKLOAD = r"""
import json, os, tempfile
import mlflow
from mlflow import MlflowClient

class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [2 * x for x in model_input]

mlflow.set_experiment("e2e-client-workload")
with mlflow.start_run() as run:
    mlflow.log_params({"alpha": "0.5", "layers": "3"})
    for step in range(5):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    path = os.path.join(tempfile.mkdtemp(), "notes.txt")
    with open(path, "w") as f:
        f.write("artifact from the e2e client")
    mlflow.log_artifact(path, artifact_path="docs")
    info = mlflow.pyfunc.log_model(name="model", python_model=Doubler(), pip_requirements=[],
                                   registered_model_name="e2e-doubler")
client = MlflowClient()
run = client.get_run(run.info.run_id)
history = [m.value for m in client.get_metric_history(run.info.run_id, "loss")]
local = client.download_artifacts(run.info.run_id, "docs/notes.txt", tempfile.mkdtemp())
versions = client.search_model_versions("name='e2e-doubler'")
loaded = mlflow.pyfunc.load_model(f"models:/e2e-doubler/{versions[0].version}")
print(json.dumps({
    "params": run.data.params, "history": history, "artifact": open(local).read(),
    "artifact_uri": run.info.artifact_uri,
    "versions": [(v.version, v.status, v.run_id) for v in versions], "run_id": run.info.run_id,
    "prediction": list(loaded.predict([1, 2, 3])),
}))
"""


def test_client_workload(release: Release) -> None:
    result = run_client(CLIENT_WORKLOAD, release.tracking_uri(), release.workdir / "client")
    assert result["params"] == {"alpha": "0.5", "layers": "3"}
    assert result["history"] == [1.0, 0.5, 1 / 3, 0.25, 0.2]
    assert result["artifact"] == "artifact from the e2e client"
    assert result["artifact_uri"].startswith("mlflow-artifacts:/")
    assert result["versions"] == [["1", "READY", result["run_id"]]]
    assert result["prediction"] == [2, 4, 6]
    # Served artifacts land on the artifacts volume.
    stored = list(release.artifact_dir().rglob("notes.txt"))
    assert len(stored) == 1 and stored[0].read_text() == "artifact from the e2e client"


def snapshot(release: Release) -> dict:
    tables = [
        r[0]
        for r in release.db_query(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' ORDER BY 1"
        )
    ]
    counts = {t: release.db_query(f'SELECT count(*) FROM "{t}"')[0][0] for t in tables}
    revision = release.db_query("SELECT version_num FROM alembic_version")
    return {"revision": revision, "counts": counts}


def test_migration_is_idempotent(release: Release) -> None:
    # The install already migrated the empty database: run the Job's step twice more against
    # the up-to-date schema (the server keeps running, as on `helm upgrade` without changes).
    run_client(
        CLIENT_WORKLOAD.replace("e2e-client-workload", "e2e-before-remigrate").replace(
            "e2e-doubler", "e2e-doubler-2"
        ),
        release.tracking_uri(),
        release.workdir / "client2",
    )
    before = snapshot(release)
    assert before["counts"]["runs"] >= 1 and before["counts"]["metrics"] >= 5
    for attempt in (2, 3):
        process = release.migrate(name=f"mlflow-migrate-{attempt}-abcde")
        output = process.output()
        assert "tracking schema" in output and ": unchanged" in output, output
        assert "migrations done" in output
        assert snapshot(release) == before
    code, output = release.helm_test()
    assert code == 0, output


def test_gateway_secrets_are_encrypted_with_the_charts_passphrase(release: Release) -> None:
    """The real server reads MLFLOW_CRYPTO_KEK_PASSPHRASE from the chart's Secret: it reports
    no default passphrase (mlflow/server/handlers.py, _get_secrets_config), and a gateway secret
    it stores opens with that passphrase and not with MLflow's public default
    (mlflow/utils/crypto.py: KEKManager, _decrypt_secret, DEFAULT_KEK_PASSPHRASE)."""
    import urllib.request

    from mlflow.exceptions import MlflowException
    from mlflow.utils.crypto import DEFAULT_KEK_PASSPHRASE, KEKManager, _decrypt_secret

    status, body = release.get("/ajax-api/3.0/mlflow/gateway/secrets/config")
    assert status == 200, body
    assert json.loads(body)["using_default_passphrase"] is False
    request = urllib.request.Request(
        release.tracking_uri() + "/api/3.0/mlflow/gateway/secrets/create",
        data=json.dumps({"secret_name": "e2e-openai", "provider": "openai",
                         "secret_value": {"api_key": "sk-e2e-not-a-real-key"}}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
    [(secret_id, name, encrypted, wrapped, version)] = release.db_query(
        "SELECT secret_id, secret_name, encrypted_value, wrapped_dek, kek_version FROM secrets"
        " WHERE secret_name = 'e2e-openai'")
    assert version == 1
    passphrase = release.server_env()["MLFLOW_CRYPTO_KEK_PASSPHRASE"]
    assert len(passphrase) == 48
    opened = _decrypt_secret(bytes(encrypted), bytes(wrapped), KEKManager(passphrase, 1),
                             secret_id, name)
    assert opened == {"api_key": "sk-e2e-not-a-real-key"}
    with pytest.raises(MlflowException):
        _decrypt_secret(bytes(encrypted), bytes(wrapped), KEKManager(DEFAULT_KEK_PASSPHRASE, 1),
                        secret_id, name)
