"""One run at a time per release: the Lease `mlflow-helm.lock.RELEASE` in its namespace
(src/mlflow_helm/lock.py). The fake Kubernetes API serves coordination.k8s.io/v1 Leases with
resourceVersion-based optimistic concurrency, as the API server does (tests/fakes/kube.py)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from click.testing import CliRunner

from mlflow_helm.cli import main
from mlflow_helm.commands import do_install
from mlflow_helm.errors import UserError
from mlflow_helm.lock import Lock, LockHeld
from tests.cli.conftest import cli_env

LEASE = "mlflow-helm.lock.mlflow"


def stamp(seconds_ago: float) -> str:
    t = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=seconds_ago)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def held_by(world, who: str, renewed_ago: float, ns: str = "mlflow") -> None:
    world.kube.namespaces.setdefault(ns, {"metadata": {"name": ns}})
    status, _, _ = world.kube._lease("POST", ns, None, {
        "metadata": {"name": LEASE}, "spec": {
            "holderIdentity": who, "leaseDurationSeconds": 60,
            "acquireTime": stamp(renewed_ago + 30), "renewTime": stamp(renewed_ago)}})
    assert status == 201


def test_a_second_run_fails_at_once_naming_the_holder(world):
    held_by(world, "ci@runner-7 pid 4242", renewed_ago=5)
    before = len(world.mutating())
    result = CliRunner().invoke(main, ["install", "--local", "--skip-tests"],
                                env=cli_env(world))
    assert result.exit_code == 7, result.output
    assert "release mlflow/mlflow is being changed by another run: ci@runner-7 pid 4242, " \
        "since 20" in result.output
    assert "renewed 5s ago" in result.output and "expires 60s after" in result.output
    assert len(world.mutating()) == before and world.helm_calls("upgrade") == []
    assert world.kube.lease("mlflow", LEASE)["spec"]["holderIdentity"] == "ci@runner-7 pid 4242"
    # uninstall takes the same lock.
    gone = CliRunner().invoke(main, ["uninstall"], env=cli_env(world))
    assert gone.exit_code == 7 and world.helm_calls("uninstall") == []


def test_an_expired_lease_is_taken_over_and_released_at_the_end(world):
    held_by(world, "me@laptop pid 1", renewed_ago=600)  # a run that crashed
    do_install(world.context(local=True, skip_tests=True))
    assert world.helm_calls("upgrade")
    puts = [c for c in world.kube.lock_calls() if c.method == "PUT"]
    assert [c.status for c in puts] == [200]  # the takeover
    assert world.kube.lease("mlflow", LEASE) is None  # given back


def test_two_runs_at_once_one_is_refused(world):
    """Both start together; the one that creates the Lease second is refused at once."""
    results: dict = {}
    barrier = threading.Barrier(2)

    def install(name):
        ctx = world.context(local=True, skip_tests=True)
        barrier.wait()
        try:
            do_install(ctx)
            results[name] = "ok"
        except LockHeld as exc:
            results[name] = exc

    threads = [threading.Thread(target=install, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refused = [r for r in results.values() if isinstance(r, LockHeld)]
    assert sorted(map(type, results.values()), key=str) and len(refused) == 1, results
    assert "is being changed by another run" in refused[0].message
    assert len(world.helm_calls("upgrade")) == 1
    assert world.kube.lease("mlflow", LEASE) is None


def test_the_lock_is_released_on_error_too(world):
    with pytest.raises(UserError, match="instance nope not found"):
        do_install(world.context(namespace="default", database="cloudsql",
                                 cloudsql_instance="nope"))
    assert [c.method for c in world.kube.lock_calls()] == ["POST", "DELETE"]
    assert world.kube.lease("default", LEASE) is None


def test_a_new_namespace_is_locked_once_it_exists(world):
    do_install(world.context(namespace="fresh", local=True, skip_tests=True))
    creates = [c for c in world.kube.lock_calls() if c.method == "POST"]
    assert [c.status for c in creates] == [404, 201]  # no namespace yet, then taken
    assert world.kube.lease("fresh", LEASE) is None


def test_stale_resource_version_is_a_conflict_and_renewal_keeps_it(world):
    lock = Lock(world.context(local=True).kube, "default", "mlflow", duration=3)
    assert lock.acquire()
    first = world.kube.lease("default", LEASE)
    stale = dict(first, metadata={**first["metadata"], "resourceVersion": "1"})
    assert world.kube._lease("PUT", "default", LEASE, stale)[0] == 409
    threading.Event().wait(1.5)  # a renewal (every duration/3)
    renewed = world.kube.lease("default", LEASE)
    assert renewed["spec"]["renewTime"] > first["spec"]["renewTime"]
    assert renewed["spec"]["acquireTime"] == first["spec"]["acquireTime"]
    lock.release()
    assert world.kube.lease("default", LEASE) is None
