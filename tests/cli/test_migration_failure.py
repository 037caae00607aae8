"""A failed migration is reported with the Job's log (issue 14, item 5).

With --wait-for-jobs Helm fails the upgrade when the migration Job fails, and with --atomic /
--rollback-on-failure its rollback deletes the Job with its pods: the log that says why is
gone before the CLI hears of the failure. The CLI watches the release's migration Jobs while
Helm runs and reports the failed container's last lines with Helm's error.

The recorder's failing upgrade (tests/fakes/helm_recorder.py fail_migration) creates the
rendered migration Job in the fake Kubernetes API, lets the test's job runner fail it, holds
it failed as Helm would while noticing, deletes it as the rollback does, and prints Helm's own
error text of each major (sources there). The fake's pod status follows core/v1 PodStatus
(containerStatuses[].state.terminated.exitCode)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mlflow_helm.cli import main
from tests.cli.conftest import cli_env

LOCAL = ["--local", "--skip-tests", "--yes"]
LOG = ("[mlflow-db] MLflow 3.17.2, database postgresql+psycopg://mlflow@mlflow-postgresql.mlflow"
       ".svc.cluster.local:5432/mlflowdb\n"
       "[mlflow-db] ERROR: no backup, no migration: this migration (tracking 0584bdc529eb -> "
       "dc11669786a5) found no dump from the backup init container. Nothing was changed.\n")


@pytest.mark.parametrize("world", ["3", "4"], indirect=True)
def test_a_failed_migration_is_reported_with_its_log(world):
    assert CliRunner().invoke(main, ["install", *LOCAL], env=cli_env(world)).exit_code == 0
    world.kube.job_runner = lambda job, fake: (False, LOG)
    result = CliRunner().invoke(main, ["install", *LOCAL, "--set", "server.workers=3"],
                                env=cli_env(world, HELM_MIGRATION_RESULT="fail"))
    assert result.exit_code == 5, result.output
    err = result.stderr
    flag = "rollback-on-failure" if world.helm_major == "4" else "atomic"
    assert f"release mlflow failed, and has been rolled back due to {flag} being set" in err
    [job] = [j["metadata"]["name"] for j in world.kube.jobs_created]
    assert job.startswith("mlflow-migrate-")
    assert (f"The migration Job {job} failed in its migrate container; its last lines:\n"
            "  [mlflow-db] MLflow 3.17.2, database ") in err
    assert "  [mlflow-db] ERROR: no backup, no migration: this migration" in err
    assert f"`kubectl -n mlflow logs job/{job} -c migrate`" in err
    assert world.kube.jobs == {}  # the rollback deleted it: the log above is all there is


def test_a_helm_failure_without_a_failed_migration_is_helms_alone(world):
    assert CliRunner().invoke(main, ["install", *LOCAL], env=cli_env(world)).exit_code == 0
    bad = CliRunner().invoke(main, ["install", *LOCAL, "--set", "server.workers=3"],
                             env=cli_env(world, HELM_MIGRATION_RESULT="fail",
                                         HELM_MIGRATION_FAIL_WAIT="1"))
    # The default runner succeeds: the Job never fails, so the recorder gives up (exit 2);
    # the CLI reports Helm's failure and no migration log.
    assert bad.exit_code == 5
    assert "The migration Job" not in bad.stderr
