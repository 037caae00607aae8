"""`mlflow-helm rollback` (issue 14, item 4): a rollback to an older MLflow than the deployed
one is refused before Helm is called, naming the backup taken before the newer one migrated;
after a restore (`--after-restore`), or within one MLflow version, it is `helm rollback` with
the waits and timeout of an upgrade.

The recorder's `history`, `get values --all --revision` and `rollback` follow Helm: history's
JSON is releaseInfo (revision, updated, status, chart NAME-VERSION, app_version, description;
Helm 3.17.3 cmd/helm/history.go, 4.1.4 pkg/cmd/history.go); a rollback makes a new revision
copying the target's chart and values, described "Rollback to N", and supersedes the deployed
one (pkg/action/rollback.go, both majors); `rollback` accepts --wait and --wait-for-jobs on
both majors (`helm rollback --help`, 3.17.3 and 4.1.4). `--all` values are coalesced by the real
Helm (tests/fakes/helm_recorder.py supplied_values)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from mlflow_helm.cli import main
from tests.cli.conftest import cli_env

LOCAL = ["--local", "--skip-tests", "--yes"]
DUMP = "/backup/pre-migration/2026-12-07/mlflowdb-20261207T101500Z-from-0584bdc529eb.dump"
MIGRATE_LOG = (
    "[mlflow-db] MLflow 3.17.2, database postgresql+psycopg://mlflow@mlflow-postgresql."
    "mlflow.svc.cluster.local:5432/mlflowdb\n"
    f"[mlflow-db] backup: {DUMP}, 48213 bytes, verified; migrating (tracking 0584bdc529eb -> "
    "dc11669786a5)\n[mlflow-db] migrations done\n")


def cli(world, *args):
    return CliRunner().invoke(main, list(args), env=cli_env(world))


def set_app_version(world, app_version: str) -> None:
    """The deployed revision as an older chart left it: its appVersion, hence its image."""
    state = json.loads(world.state.read_text())
    state["mlflow/mlflow"]["appVersion"] = app_version
    world.state.write_text(json.dumps(state))


def upgraded_from(world, app_version: str, *install_args: str) -> None:
    """Revision 1 ran MLflow `app_version`; revision 2, this chart's (3.17.2)."""
    assert cli(world, "install", *install_args).exit_code == 0
    set_app_version(world, app_version)
    second = cli(world, "install", *install_args, "--set", "server.workers=3")
    assert second.exit_code == 0, second.output


def two_revisions(world) -> None:
    """Two revisions of this chart, one MLflow: the second only changes a value."""
    assert cli(world, "install", *LOCAL).exit_code == 0
    assert cli(world, "install", *LOCAL, "--set", "server.workers=3").exit_code == 0


def migrate_job(world) -> None:
    world.kube.add_finished_job("mlflow", "mlflow-migrate-3f9a0c1d2e", {
        "app.kubernetes.io/instance": "mlflow", "app.kubernetes.io/component": "migrate"},
        MIGRATE_LOG)


def test_a_rollback_to_an_older_mlflow_is_refused_naming_the_dump(world):
    upgraded_from(world, "2.22.0", *LOCAL)
    migrate_job(world)
    refused = cli(world, "rollback")
    assert refused.exit_code == 2, refused.output
    assert ("rollback of mlflow/mlflow to revision 1 (MLflow 2.22.0) refused: the deployed "
            "revision 2 runs MLflow 3.17.2") in refused.stderr
    assert f"The backup taken before that migration: {DUMP} (from the log of " \
           "job/mlflow-migrate-3f9a0c1d2e)" in refused.stderr
    assert "`mlflow-helm rollback mlflow 1 -n mlflow --after-restore`" in refused.stderr
    assert world.helm_calls("rollback") == []

    done = cli(world, "rollback", "--after-restore")
    assert done.exit_code == 0, done.output
    [call] = world.helm_calls("rollback")
    argv = call["argv"]
    assert argv[:3] == ["rollback", "mlflow", "1"]
    assert "--wait" in argv and "--wait-for-jobs" in argv
    assert argv[argv.index("--timeout") + 1] == "31m"  # as an upgrade's (test_timeouts.py)
    assert "revision 2 -> 1: MLflow 3.17.2 -> 2.22.0" in done.stdout
    state = json.loads(world.state.read_text())["mlflow/mlflow"]
    assert (state["revision"], state["appVersion"], state["description"]) == (
        3, "2.22.0", "Rollback to 1")


def test_a_rollback_within_one_mlflow_runs_at_once(world):
    two_revisions(world)
    result = cli(world, "rollback", "1")
    assert result.exit_code == 0, result.output
    assert "revision 2 -> 1: MLflow 3.17.2 -> 3.17.2" in result.stdout
    assert len(world.helm_calls("rollback")) == 1
    # Forward again, to revision 2 (the release named, as `helm rollback RELEASE REVISION`).
    again = cli(world, "rollback", "mlflow", "2")
    assert again.exit_code == 0, again.output
    assert "revision 3 -> 2" in again.stdout


def test_dry_run_says_and_does_nothing(world):
    two_revisions(world)
    result = cli(world, "rollback", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "revision 2 -> 1" in result.stdout
    assert world.helm_calls("rollback") == []


def test_cloudsql_names_the_backup_the_release_names(world):
    flags = ["--database", "cloudsql", "--cloudsql-instance", "pg", "--skip-tests", "--yes"]
    upgraded_from(world, "2.22.0", *flags)
    backup_id = json.loads(world.state.read_text())["mlflow/mlflow"]["values"]["migrations"][
        "backup"]["cloudSql"]["backupId"]
    refused = cli(world, "rollback")
    assert refused.exit_code == 2, refused.output
    assert (f"Cloud SQL backup {backup_id} of instance my-proj:europe-west1:pg, taken for "
            f"MLflow 3.17.2 (`gcloud sql backups restore {backup_id} --restore-instance pg`)"
            in refused.stderr), refused.stderr
    assert world.helm_calls("rollback") == []


def test_targets_that_are_not_there(world):
    missing = cli(world, "rollback")
    assert missing.exit_code == 6 and "is not installed" in missing.stderr
    assert cli(world, "install", *LOCAL).exit_code == 0
    first = cli(world, "rollback")
    assert first.exit_code == 2
    assert "revision 1 is the first one kept: there is nothing to roll back to" in first.stderr
    unknown = cli(world, "rollback", "mlflow", "7")
    assert unknown.exit_code == 2
    assert "revision 7 is not in the release's history" in unknown.stderr
    assert "revisions kept (helm history --max 1): 1 (deployed, MLflow 3.17.2)" in unknown.stderr
    assert world.helm_calls("rollback") == []
