"""`mlflow-helm render` for GitOps: the same bytes on every run, no secret in the output.

Argo CD renders with `helm template`, where `lookup` is empty, so a chart-generated password is
new on every comparison and the application never syncs (Argo CD's docs, user-guide/helm.md,
"Random Data"). The render command names the Secrets instead and, with --create-secrets,
creates the missing ones once. Both Helm majors render (REAL_HELM is the Helm the stand-in
execs for `template`).
"""

from __future__ import annotations

import base64
import string

import pytest
import yaml
from click.testing import CliRunner

from mlflow_helm.cli import main
from tests.cli.conftest import cli_env
from tests.conftest import helm_binary

NS = "mlflow"


@pytest.fixture(params=["3", "4"], ids=lambda v: f"helm{v}")
def real_helm(request) -> str:
    return helm_binary(request.param)


def render(world, real_helm, *args: str):
    result = CliRunner().invoke(main, ["render", "--local", *args],
                                env=cli_env(world, REAL_HELM=real_helm))
    assert result.exit_code == 0, result.output
    return result


def docs(stdout: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(stdout) if d]


def server_env(objects: list[dict]) -> dict:
    deployment = next(d for d in objects if d["kind"] == "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    mlflow = next(c for c in spec["containers"] if c["name"] == "mlflow")
    return {e["name"]: e for e in mlflow["env"]}


def test_two_renders_are_byte_identical(world, real_helm):
    first, second = render(world, real_helm), render(world, real_helm)
    assert first.stdout == second.stdout
    objects = docs(first.stdout)
    # No generated Secret is rendered: the chart reads the ones the note names.
    assert not [d for d in objects if d["kind"] == "Secret"]
    env = server_env(objects)
    assert env["MLFLOW_DB_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-postgresql"
    assert env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]["valueFrom"]["secretKeyRef"]["name"] == \
        "mlflow-crypto"
    assert "checksum/db-secret" not in next(
        d for d in objects if d["kind"] == "Deployment")["spec"]["template"]["metadata"][
        "annotations"]
    assert "mlflow-postgresql (in-cluster PostgreSQL password; keys password)" in first.stderr
    assert "--create-secrets" in first.stderr
    assert world.kube.calls == []  # without --create-secrets no cluster is needed


def test_create_secrets_once_and_keep_them(world, real_helm):
    # One of them exists already (a release first installed with Helm, say): kept as it is.
    world.kube.namespaces[NS] = {"metadata": {"name": NS}}
    from mlflow_helm.kube import Kube

    Kube(kubeconfig=str(world.kubeconfig)).put_secret(NS, "mlflow-postgresql",
                                                      {"password": "kept-password"})
    plain = render(world, real_helm)
    created = render(world, real_helm, "--create-secrets")
    # The manifests do not depend on the secrets' values: the same bytes either way.
    assert created.stdout == plain.stdout
    pg = world.kube.secret(NS, "mlflow-postgresql")
    assert base64.b64decode(pg["data"]["password"]).decode() == "kept-password"
    kek = world.kube.secret(NS, "mlflow-crypto")
    passphrase = base64.b64decode(kek["data"]["passphrase"]).decode()
    assert len(passphrase) == 48
    assert set(passphrase) <= set(string.ascii_letters + string.digits + "-._~")
    assert "create    secret mlflow/mlflow-crypto" in created.stderr
    assert "unchanged secret mlflow/mlflow-postgresql" in created.stderr
    assert passphrase not in created.output and "kept-password" not in created.output
    # Again: nothing changes, the passphrase stays.
    mutations = len(world.kube.mutating_calls())
    again = render(world, real_helm, "--create-secrets")
    assert again.stdout == plain.stdout
    assert len(world.kube.mutating_calls()) == mutations
    assert world.kube.secret(NS, "mlflow-crypto")["data"] == kek["data"]


def test_user_values_decide_which_secrets(world, real_helm, tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"auth": {"enabled": True}}))
    world.kube.namespaces[NS] = {"metadata": {"name": NS}}
    result = render(world, real_helm, "-f", str(values), "--set",
                    "server.cryptoKek.existingSecret=team-kek", "--create-secrets")
    env = server_env(docs(result.stdout))
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow-auth"
    assert env["MLFLOW_CRYPTO_KEK_PASSPHRASE"]["valueFrom"]["secretKeyRef"]["name"] == "team-kek"
    auth = world.kube.secret(NS, "mlflow-auth")
    assert set(auth["data"]) == {"admin-password", "flask-secret-key"}
    assert world.kube.secret(NS, "mlflow-crypto") is None  # the user names their own
    assert render(world, real_helm, "-f", str(values), "--set",
                  "server.cryptoKek.existingSecret=team-kek").stdout == result.stdout


def test_create_secrets_creates_the_namespace_first(world, real_helm):
    assert NS not in world.kube.namespaces
    result = render(world, real_helm, "--create-secrets")
    assert NS in world.kube.namespaces
    assert "create    namespace mlflow\n" in result.stderr
    assert world.kube.secret(NS, "mlflow-postgresql") is not None


def test_cloudsql_render_says_how_to_name_the_backup(world, real_helm):
    # No cluster is read, so no deployed release names a backup: the rendered migration Job
    # would refuse to migrate a database with data until one is named (files/db.py).
    result = CliRunner().invoke(main, ["render", "--database", "cloudsql",
                                       "--cloudsql-instance", "pg"],
                                env=cli_env(world, REAL_HELM=real_helm))
    assert result.exit_code == 0, result.output
    assert "note: the migration Job migrates a database that holds data only after an " \
           "on-demand backup taken for its MLflow version" in result.stderr
    job = next(d for d in docs(result.stdout) if d["kind"] == "Job")
    env = {e["name"]: e.get("value") for e in
           job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_BACKUP_MODE"] == "cloudsql" and env["MLFLOW_BACKUP_CLOUDSQL_ID"] == ""
