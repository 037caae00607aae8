"""Coherent waits (issue 14, item 5): Helm waits longer than the migration may take.

The CLI runs `helm upgrade --install --wait --wait-for-jobs` with --atomic (Helm 3) or
--rollback-on-failure (Helm 4); on a timeout Helm rolls the release back, which deletes the
new revision's migration Job (an ordinary release object: templates/job-migrate.yaml) while
it may still be migrating. So the upgrade's --timeout must exceed the Job's own bound
(migrations.activeDeadlineSeconds: Kubernetes fails the Job after it, batch/v1 JobSpec) and
the server pods' wait for their schema (migrations.waitTimeoutSeconds, db.py wait), plus
the time a server takes to pass its probes. Helm's --timeout is a Go duration
(time.ParseDuration: "31m", "1h30m", "90s")."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from mlflow_helm.cli import main
from mlflow_helm.options import duration_seconds
from tests.cli.conftest import cli_env


def timeout_of(call: dict) -> str:
    argv = call["argv"]
    return argv[argv.index("--timeout") + 1]


def test_default_waits_longer_than_the_migration(world):
    result = CliRunner().invoke(main, ["install", "--local"], env=cli_env(world))
    assert result.exit_code == 0, result.output
    # chart defaults: activeDeadlineSeconds 1800, waitTimeoutSeconds 900: 1800 + 60 s
    assert timeout_of(world.helm_calls("upgrade")[-1]) == "31m"
    assert "helm upgrade --install mlflow (up to 31m)" in result.stderr
    assert timeout_of(world.helm_calls("test")[-1]) == "10m"  # helm test: its own


def test_the_default_follows_the_values(world, tmp_path):
    values = tmp_path / "big-database.yaml"
    values.write_text("migrations:\n  activeDeadlineSeconds: 7200\n")
    result = CliRunner().invoke(main, ["install", "--local", "--skip-tests", "-f", str(values)],
                                env=cli_env(world))
    assert result.exit_code == 0, result.output
    assert timeout_of(world.helm_calls("upgrade")[-1]) == "121m"
    result = CliRunner().invoke(main, ["install", "--local", "--skip-tests", "--set",
                                       "migrations.waitTimeoutSeconds=9000"], env=cli_env(world))
    assert result.exit_code == 0, result.output
    assert timeout_of(world.helm_calls("upgrade")[-1]) == "151m"


def test_a_timeout_shorter_than_the_migration_is_refused_first(world):
    result = CliRunner().invoke(main, ["install", "--local", "--timeout", "10m"],
                                env=cli_env(world))
    assert result.exit_code == 2, result.output
    assert "--timeout 10m is shorter than the migration may take" in result.stderr
    assert "migrations.activeDeadlineSeconds 1800s, waitTimeoutSeconds 900s" in result.stderr
    assert "pass at least --timeout 31m" in result.stderr
    assert world.helm_calls("upgrade") == [] and world.mutating() == []


def test_a_long_enough_timeout_is_passed_as_given(world):
    result = CliRunner().invoke(main, ["install", "--local", "--timeout", "1h"],
                                env=cli_env(world))
    assert result.exit_code == 0, result.output
    assert timeout_of(world.helm_calls("upgrade")[-1]) == "1h"
    assert timeout_of(world.helm_calls("test")[-1]) == "1h"


@pytest.mark.parametrize("value,seconds", [("31m", 1860), ("1h30m", 5400), ("90s", 90),
                                           ("1.5h", 5400), ("500ms", 0.5), ("2h0m10s", 7210)])
def test_go_durations(value, seconds):
    assert duration_seconds(value) == pytest.approx(seconds)
