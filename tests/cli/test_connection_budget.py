"""The connection budget against the Cloud SQL instance's max_connections (budget.py).

Sources: Cloud SQL for PostgreSQL "Quotas and limits" (default max_connections by instance
memory: 0.6 GB 25, 1.7 GB 50, 3.75 up to 6 GB 100, 6 up to 7.5 GB 200, ... as the chart
README's Sizing table lists them); the max_connections flag overrides it (sqladmin v1
DatabaseFlags). The instance's tier and flags are what instances.get returns
(Settings.tier, Settings.databaseFlags).
"""

from __future__ import annotations

import pytest

from mlflow_helm import budget
from mlflow_helm.commands import do_install
from tests.cli.conftest import PROJECT
from tests.cli.test_install import upgrade_call

PG = dict(database="cloudsql", cloudsql_instance="pg", skip_tests=True)


def tier(world, name: str, flags: dict | None = None) -> None:
    settings = world.google.state.instances[(PROJECT, "pg")]["settings"]
    settings["tier"] = name
    if flags:
        settings["databaseFlags"] = [{"name": k, "value": v} for k, v in flags.items()]


def connections(values: dict) -> int:
    """What the chart will open with these values over its defaults (1 replica, 2 workers)."""
    import yaml

    from mlflow_helm.chart import bundled_chart
    from mlflow_helm.values import deep_merge

    defaults = yaml.safe_load((bundled_chart() / "values.yaml").read_text())
    return budget.demand(deep_merge(defaults, values))[0]


@pytest.mark.parametrize("name,limit", [("db-f1-micro", 25), ("db-g1-small", 50),
                                        ("db-custom-1-3840", 100)])
def test_small_tiers_get_a_warning_and_pool_values_that_fit(world, name, limit):
    tier(world, name)
    result = do_install(world.context(**PG))
    _, values = upgrade_call(world)
    warning = next(n for n in result.notes if n.startswith("warning: MLflow may open"))
    assert f"max_connections {limit} (Cloud SQL's default for {name})" in warning
    assert connections(values) + budget.RESERVED <= int(limit * budget.SHARE)
    # The chart's own rule: pool.size + maxOverflow above the thread limit.
    pool = values["database"]["pool"]
    assert pool["size"] + pool["maxOverflow"] > values["server"]["threadLimit"] >= 1


def test_micro_tier_gets_fewer_threads_per_worker(world):
    tier(world, "db-f1-micro")  # 25: 80% is 20, 10 kept for the Job: 10 for 2 workers
    do_install(world.context(**PG))
    _, values = upgrade_call(world)
    assert "workers" not in values["server"]
    assert values["server"]["threadLimit"] == 4
    assert values["database"]["pool"] == {"size": 4, "maxOverflow": 1}


def test_too_few_for_two_workers_drops_to_one(world):
    tier(world, "db-f1-micro", flags={"max_connections": "17"})  # 13 usable: 3 for servers
    do_install(world.context(**PG))
    _, values = upgrade_call(world)
    assert values["server"] == {"workers": 1, "threadLimit": 2}
    assert values["database"]["pool"] == {"size": 2, "maxOverflow": 1}


def test_too_few_for_any_worker_only_warns(world):
    tier(world, "db-f1-micro", flags={"max_connections": "14"})
    result = do_install(world.context(**PG))
    _, values = upgrade_call(world)
    assert "pool" not in values["database"]
    warning = next(n for n in result.notes if n.startswith("warning: MLflow may open"))
    assert "max_connections 14 (its max_connections flag)" in warning
    assert "raise the instance's max_connections flag" in warning


def test_a_tier_that_fits_changes_nothing(world):
    tier(world, "db-custom-2-7680")  # 200
    result = do_install(world.context(**PG))
    _, values = upgrade_call(world)
    assert "pool" not in values["database"] and "server" not in values
    assert not [n for n in result.notes if "connections" in n]


def test_the_flag_wins_over_the_tier(world):
    tier(world, "db-f1-micro", flags={"max_connections": "500"})
    result = do_install(world.context(**PG))
    _, values = upgrade_call(world)
    assert "pool" not in values["database"]
    assert not [n for n in result.notes if "connections" in n]


def test_the_users_own_sizing_is_kept_and_warned_about(world, tmp_path):
    tier(world, "db-g1-small")
    mine = tmp_path / "mine.yaml"
    mine.write_text("server:\n  workers: 4\n")
    result = do_install(world.context(**PG, values_files=[str(mine)]))
    _, values = upgrade_call(world)
    assert "pool" not in values["database"] and "server" not in values
    warning = next(n for n in result.notes if n.startswith("warning: MLflow may open"))
    assert "1 replica(s) x 4 worker(s) x 50 pool connections" in warning
    assert "you set server.workers" in warning


def test_unknown_tier_is_not_guessed(world):
    tier(world, "db-perf-optimized-N-8")
    result = do_install(world.context(**PG))
    _, values = upgrade_call(world)
    assert "pool" not in values["database"]
    assert not [n for n in result.notes if "connections" in n]
