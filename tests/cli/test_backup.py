"""A Cloud SQL backup before an upgrade that changes the MLflow image (issue 14, item 1):
taken with backupRuns.insert, its operation polled to DONE and the run read back SUCCESSFUL,
all before `helm upgrade` starts the migration Job; a failed backup operation is started once
more; when it cannot be taken, nothing is upgraded.

The fake follows the sqladmin v1 discovery document (requests are validated against it):
backupRuns.insert takes a BackupRun body and returns an Operation, whose backupContext.backupId
names the run; backupRuns.get returns the BackupRun with its status (RUNNING, SUCCESSFUL,
FAILED…). The operation type BACKUP_VOLUME is the one Cloud SQL lists for an on-demand backup
(`gcloud sql operations list`); that the run is RUNNING during the operation and FAILED when it
fails is our model of the API's documented statuses, not a recorded exchange."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mlflow_helm.cli import main
from tests.cli.conftest import cli_env

FLAGS = ["--database", "cloudsql", "--cloudsql-instance", "pg", "--skip-tests", "--yes"]
OLD = "ghcr.io/mlflow/mlflow:v2.22.0-full"
NEW = "ghcr.io/mlflow/mlflow:v3.17.2-full"


def install(world, *args):
    return CliRunner().invoke(main, ["install", *FLAGS, *args], env=cli_env(world))


def deployed_with_mlflow(world, app_version: str) -> None:
    """The release as an older chart left it: its appVersion, hence its image."""
    state = json.loads(world.state.read_text())
    state["mlflow/mlflow"]["appVersion"] = app_version
    world.state.write_text(json.dumps(state))


def backup_calls(world) -> list:
    return [c for c in world.google.calls if c.op.startswith("backupRuns.")]


def runs(world) -> list[dict]:
    return sorted(world.google.state.backups.get(("my-proj", "pg"), {}).values(),
                  key=lambda r: r["id"])


def test_no_backup_on_first_install_or_when_the_image_stays(world):
    first = install(world)
    assert first.exit_code == 0, first.output
    again = install(world, "--set", "server.workers=3")  # an upgrade, same image
    assert again.exit_code == 0, again.output
    assert len(world.helm_calls("upgrade")) == 2
    assert backup_calls(world) == []
    assert "cloud sql backup" not in first.output + again.output


def test_an_upgrade_of_mlflow_is_backed_up_first(world):
    assert install(world).exit_code == 0
    deployed_with_mlflow(world, "2.22.0")
    result = install(world)
    assert result.exit_code == 0, result.output
    assert (f"+ create    cloud sql backup             pg  (on demand, before the upgrade from "
            f"{OLD} to {NEW} migrates mlflow_mlflow_mlflow)") in result.stdout
    [run] = runs(world)
    assert run["status"] == "SUCCESSFUL" and run["type"] == "ON_DEMAND"
    assert run["description"] == f"mlflow-helm: before upgrading mlflow/mlflow to {NEW}"
    assert f"backup {run['id']} of pg is SUCCESSFUL" in result.stderr
    assert f"gcloud sql backups restore {run['id']} --restore-instance pg" in result.stderr
    # Taken, and read back, before Helm was asked to upgrade.
    checked = next(c for c in world.google.calls if c.op == "backupRuns.get")
    assert checked.end < world.helm_calls("upgrade")[-1]["t"]
    # The chart's migration Job migrates only after a backup taken for its MLflow version
    # (charts/mlflow/files/db.py, MLFLOW_BACKUP_MODE=cloudsql): the upgrade names this one.
    upgrade = world.helm_calls("upgrade")[-1]
    named = {"backupId": run["id"], "mlflowVersion": "3.17.2"}
    assert json.loads(upgrade["stdin"])["migrations"]["backup"]["cloudSql"] == named
    # The new image is deployed now: the next run takes no backup, names the same one, and
    # so renders the same migration Job: nothing to do.
    again = install(world)
    assert again.exit_code == 0, again.output
    assert len(runs(world)) == 1
    assert "unchanged" in again.stdout and "helm release" in again.stdout
    assert "~ update    helm release" not in again.stdout
    assert len(world.helm_calls("upgrade")) == 2


def test_a_failed_backup_operation_is_started_once_more(world):
    assert install(world).exit_code == 0
    deployed_with_mlflow(world, "2.22.0")
    world.google.op_errors["BACKUP_VOLUME"] = "Backup failed: the instance is under maintenance."
    result = install(world)
    assert result.exit_code == 0, result.output
    assert [r["status"] for r in runs(world)] == ["FAILED", "SUCCESSFUL"]
    assert "the backup failed; starting it once more" in result.stderr
    assert [c.op for c in backup_calls(world)] == ["backupRuns.insert", "backupRuns.insert",
                                                   "backupRuns.get"]
    assert len(world.helm_calls("upgrade")) == 2


def test_no_backup_no_upgrade(world):
    assert install(world).exit_code == 0
    deployed_with_mlflow(world, "2.22.0")

    def fail_every_backup(op, body):
        if op == "sqladmin.backupRuns.insert":
            world.google.op_errors["BACKUP_VOLUME"] = "Backup failed: disk quota exceeded."

    world.google.hooks.append(fail_every_backup)
    result = install(world)
    assert result.exit_code == 4, result.output
    assert "Backup failed: disk quota exceeded." in result.stderr
    assert [r["status"] for r in runs(world)] == ["FAILED", "FAILED"]
    assert len(world.helm_calls("upgrade")) == 1  # the first install only
    assert json.loads(world.state.read_text())["mlflow/mlflow"]["appVersion"] == "2.22.0"


def test_dry_run_shows_the_backup_and_takes_none(world):
    assert install(world).exit_code == 0
    deployed_with_mlflow(world, "2.22.0")
    result = install(world, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+ create    cloud sql backup             pg" in result.stdout
    assert backup_calls(world) == []


def test_the_mlflow_version_an_image_runs():
    from mlflow_helm.steps.release import mlflow_version

    assert mlflow_version(NEW, "3.17.2") == "3.17.2"
    assert mlflow_version("ghcr.io/mlflow/mlflow:v3.18.0rc1", "3.17.2") == "3.18.0rc1"
    assert mlflow_version("registry.example:5000/team/mlflow:3.16.1", "3.17.2") == "3.16.1"
    # A tag that says nothing: the chart's appVersion, or nothing for a chart not read here.
    assert mlflow_version("registry.example:5000/team/mlflow:prod-42", "3.17.2") == "3.17.2"
    assert mlflow_version("ghcr.io/mlflow/mlflow@sha256:" + "a" * 64, "chart 0.2.0") == ""
