"""status, test, render, uninstall and publish."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner

from mlflow_helm.cli import main
from mlflow_helm.commands import do_install, do_status, do_uninstall
from mlflow_helm.errors import NotInstalled
from tests.cli.conftest import PROJECT, cli_env
from tests.cli.test_install import DB, GSA, project_members

FULL = dict(database="cloudsql", cloudsql_instance="pg", bucket="gs://team-artifacts",
            create_bucket=True)
FULL_ARGS = ["--database", "cloudsql", "--cloudsql-instance", "pg", "--bucket",
             "gs://team-artifacts", "--create-bucket"]


def test_status_and_test_of_a_release_not_installed_fail_and_say_so(world):
    for command in ("status", "test"):
        result = CliRunner().invoke(main, [command, "-n", "team-x"], env=cli_env(world))
        assert result.exit_code == 6, result.output
        assert f"Error: {command}: release mlflow is not installed in namespace team-x" in \
            result.output
        assert "mlflow-helm install mlflow -n team-x" in result.output
        assert "port-forward" not in result.output and "POD LOGS" not in result.output
    assert world.mutating() == []
    # Uninstalled without --purge: the record says what is left.
    do_install(world.context(local=True, skip_tests=True))
    CliRunner().invoke(main, ["uninstall"], env=cli_env(world))
    result = CliRunner().invoke(main, ["status"], env=cli_env(world))
    assert result.exit_code == 6 and "its install record is still there" in result.output


def test_status_reports_present_absent_and_drifted(world):
    with pytest.raises(NotInstalled):
        do_status(world.context(**FULL))
    do_install(world.context(**FULL))
    # Someone removes our project binding: status calls it absent, the rest present.
    holder = world.google.state.projects[PROJECT]
    holder["policy"]["bindings"] = [b for b in holder["policy"]["bindings"]
                                    if b["role"] != "roles/cloudsql.client"]
    holder["n"] += 1
    mutations = len(world.mutating())
    result = CliRunner().invoke(main, ["status", *FULL_ARGS, "-o", "json"], env=cli_env(world))
    assert result.exit_code == 0, result.output
    states = {(c["kind"], c["state"]) for c in json.loads(result.output)["changes"]}
    assert ("iam binding roles/cloudsql.client", "absent") in states
    assert ("google service account", "present") in states
    assert ("helm release", "present") in states
    text = CliRunner().invoke(main, ["status", *FULL_ARGS], env=cli_env(world)).output
    assert "absent   iam binding roles/cloudsql.client" in text
    assert len(world.mutating()) == mutations  # status only reads


def test_test_command_prints_checks_and_fails_with_hint(world, monkeypatch):
    do_install(world.context(local=True, skip_tests=True))
    ok = CliRunner().invoke(main, ["test"], env=cli_env(world))
    assert ok.exit_code == 0, ok.output
    assert "ok   create experiment" in ok.output and "passed" in ok.output
    bad = CliRunner().invoke(main, ["test"], env=cli_env(world, HELM_TEST_RESULT="fail"))
    assert bad.exit_code == 5
    assert "helm test failed (artifact upload, download, delete)" in bad.output
    assert "POD LOGS: mlflow-test" in bad.output  # the failing pod's log
    assert "`kubectl -n mlflow logs deploy/mlflow` shows the server's side" in bad.output
    argv = world.helm_calls("test")[-1]["argv"]
    assert argv[:5] == ["test", "mlflow", "--namespace", "mlflow", "--logs"]


def test_render_uses_the_real_helm_with_computed_values(world):
    result = CliRunner().invoke(main, ["render", *FULL_ARGS, "--db-auth", "iam"],
                                env=cli_env(world))
    assert result.exit_code == 0, result.output
    # stdout is the manifests alone; notes (the Secrets they read) go to stderr.
    docs = [d for d in yaml.safe_load_all(result.stdout) if d]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("Deployment", "mlflow") in kinds and ("ServiceAccount", "mlflow") in kinds
    sa = next(d for d in docs if d["kind"] == "ServiceAccount")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == GSA
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    text = json.dumps(deployment)
    assert "--auto-iam-authn" in text and f"{PROJECT}:europe-west1:pg" in text
    assert world.helm_calls() == []  # rendering is the real Helm, no cluster needed
    assert world.mutating() == []


def test_uninstall_keeps_google_resources_and_data(world):
    do_install(world.context(**FULL))
    result = CliRunner().invoke(main, ["uninstall", *FULL_ARGS], env=cli_env(world))
    assert result.exit_code == 0, result.output
    assert "- delete    helm release                 mlflow/mlflow" in result.output
    kept = result.output.split("note: kept", 1)[1]
    assert "(a re-install reuses them; `--purge` deletes what this release created)" in kept
    # What really exists, read back: the account, the database, the bucket and its member.
    assert f"google service account {GSA}" in kept
    assert f"cloud sql database {DB} (on pg)" in kept
    assert "gcs bucket gs://team-artifacts" in kept
    assert "secret mlflow/mlflow-db (database password)" in kept
    assert world.helm_calls("uninstall")[0]["argv"][:2] == ["uninstall", "mlflow"]
    assert DB in world.google.state.databases[(PROJECT, "pg")]
    assert GSA in world.google.state.accounts
    assert world.kube.secret("mlflow", "mlflow-db") is not None
    assert world.gcs.members("team-artifacts", "roles/storage.objectUser")


def test_purge_asks_and_stops_on_no(world):
    do_install(world.context(**FULL))
    before = len(world.mutating())
    result = CliRunner().invoke(main, ["uninstall", *FULL_ARGS, "--purge"], input="n\n",
                                env=cli_env(world))
    assert result.exit_code == 2 and "aborted: nothing was deleted" in result.output
    assert len(world.mutating()) == before


def test_purge_with_yes_deletes_what_install_made(world):
    do_install(world.context(**FULL))
    result = CliRunner().invoke(main, ["uninstall", *FULL_ARGS, "--purge", "--yes"],
                                env=cli_env(world))
    assert result.exit_code == 0, result.output
    assert DB not in world.google.state.databases[(PROJECT, "pg")]
    assert (DB, "") not in world.google.state.users[(PROJECT, "pg")]
    assert GSA not in world.google.state.accounts
    assert project_members(world, "roles/cloudsql.client") == []
    assert project_members(world, "roles/owner") == ["user:owner@x.com"]
    assert world.kube.secret("mlflow", "mlflow-db") is None


def test_uninstall_of_a_missing_release_says_so(world):
    result = do_uninstall(world.context(local=True), purge=False, confirm=lambda q: False)
    assert result.changes[0].action == "unchanged"
    assert result.changes[0].detail == "not installed"


def test_publish_rejects_a_bad_registry(world):
    result = CliRunner().invoke(main, ["publish", "https://example.com/charts"],
                                env=cli_env(world))
    assert result.exit_code == 2 and "is not an OCI repository prefix" in result.output


def test_publish_flags_reach_the_publish_function(world, monkeypatch):
    """The command only maps flags; mlflow_helm.publish (tests/publish) does the work."""
    import mlflow_helm.publish as publishing

    seen = {}

    def fake_publish(registry, **kw):
        seen.update(kw, registry=registry)
        kw["echo"]("Packaged mlflow 0.2.0")
        return publishing.PublishResult(reference=f"{registry}/mlflow:0.2.0", chart="mlflow",
                                        version="0.2.0", app_version="3.17.2", signed=True,
                                        dry_run=True)

    monkeypatch.setattr(publishing, "publish", fake_publish)
    result = CliRunner().invoke(main, [
        "publish", "oci://127.0.0.1:5000/charts", "--version", "0.2.0", "--sign", "--key",
        "demo", "--keyring", "secring.gpg", "--plain-http", "--dry-run", "-o", "json"],
        env=cli_env(world))
    assert result.exit_code == 0, result.output
    assert seen["registry"] == "oci://127.0.0.1:5000/charts"
    assert (seen["version"], seen["sign"], seen["key"], seen["keyring"], seen["plain_http"],
            seen["dry_run"], seen["chart"]) == ("0.2.0", True, "demo", "secring.gpg", True,
                                                True, None)
    doc = json.loads(result.stdout)
    assert doc["reference"] == "oci://127.0.0.1:5000/charts/mlflow:0.2.0" and doc["signed"]
    assert "Packaged mlflow 0.2.0" not in result.stdout  # progress stays off the JSON


@pytest.mark.parametrize("flag", ["--atomic"])
def test_helm3_gets_atomic(world, flag, helm3, monkeypatch):
    monkeypatch.setenv("REAL_HELM", helm3)
    do_install(world.context(local=True))
    argv = world.helm_calls("upgrade")[0]["argv"]
    assert flag in argv and "--rollback-on-failure" not in argv
