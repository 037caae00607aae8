"""What goes wrong in real clouds: concurrent IAM writers, transient failures, crashes
half-way, slow consistency, failed operations, missing permissions."""

from __future__ import annotations

import base64
import itertools
import json

import pytest

from mlflow_helm.commands import STEPS, do_install
from mlflow_helm.errors import CloudError, PermissionDenied
from tests.cli.conftest import PROJECT
from tests.cli.test_install import DB, GSA, project_members

FULL = dict(database="cloudsql", cloudsql_instance="pg", bucket="gs://team-artifacts",
            create_bucket=True)


def test_concurrent_project_iam_writer_keeps_both_bindings(world):
    """Someone else writes the project policy between our read and our write."""
    fired = []

    def other_writer(op, body):
        if op == "cloudresourcemanager.projects.setIamPolicy" and not fired:
            fired.append(op)
            holder = world.google.state.projects[PROJECT]
            holder["policy"]["bindings"].append(
                {"role": "roles/viewer", "members": ["user:colleague@x.com"]})
            holder["n"] += 1  # their write moves the etag on

    world.google.hooks.append(other_writer)
    do_install(world.context(**FULL))
    assert fired
    assert project_members(world, "roles/viewer") == ["user:colleague@x.com"]
    assert project_members(world, "roles/cloudsql.client") == [f"serviceAccount:{GSA}"]
    conflicts = [c for c in world.google.calls if c.op == "projects.setIamPolicy"
                 and c.status == 409]
    assert len(conflicts) == 1


def test_concurrent_bucket_iam_writer_gets_412_and_both_bindings_survive(world):
    fired = []

    def other_writer(op, path):
        if op == "buckets.setIamPolicy" and not fired:
            fired.append(op)
            holder = world.gcs._holder("team-artifacts")
            holder["policy"]["bindings"].append(
                {"role": "roles/storage.objectViewer", "members": ["group:readers@x.com"]})
            holder["n"] += 1

    world.gcs.hooks.append(other_writer)
    do_install(world.context(**FULL))
    assert world.gcs.members("team-artifacts", "roles/storage.objectViewer") == \
        ["group:readers@x.com"]
    assert world.gcs.members("team-artifacts", "roles/storage.objectUser") == \
        [f"serviceAccount:{GSA}"]
    assert [c.status for c in world.gcs.calls if c.op == "buckets.setIamPolicy"] == \
        [412, 200]


def test_every_call_fails_transiently_once_and_install_succeeds(world):
    world.google.fail_every_call_once = True
    world.gcs.fail_every_call_once = True
    result = do_install(world.context(**FULL))
    assert result.tests["passed"]
    assert any(c.status == 503 for c in world.google.calls)
    assert any(c.status == 503 for c in world.gcs.calls)
    # Every distinct Google call met a 503 first and still got through.
    ok = {(c.op, c.path) for c in world.google.calls if c.status < 400}
    failed = {(c.op, c.path) for c in world.google.calls if c.status == 503}
    assert failed <= ok | {(c.op, c.path) for c in world.google.calls if c.status == 404}
    assert GSA in world.google.state.accounts
    assert DB in world.google.state.databases[(PROJECT, "pg")]


def test_rate_limits_are_retried(world):
    world.google.inject("iam.serviceAccounts.create", 429, times=2)
    world.google.inject("sqladmin.databases.insert", 503, times=2)
    do_install(world.context(**FULL))
    creates = [c.status for c in world.google.calls if c.op == "serviceAccounts.create"]
    assert creates == [429, 429, 200]


def test_retries_are_bounded(world):
    world.google.inject("sqladmin.instances.get", 503, times=50)
    with pytest.raises(Exception) as err:
        do_install(world.context(**FULL))
    assert "503" in str(err.value)
    assert len([c for c in world.google.calls if c.op == "instances.get"]) == 6
    assert world.mutating() == []


class Crash(Exception):
    pass


def end_state(world, bucket: bool = True) -> dict:
    """Everything a run leaves behind that a user could see (minus secrets' values)."""
    helm_state = json.loads(world.state.read_text())
    return {
        "google": world.google.snapshot(),
        "bucket": sorted((b["role"], tuple(sorted(b["members"]))) for b in
                         world.gcs._holder("team-artifacts")["policy"]["bindings"])
        if bucket else None,
        "kube": sorted(k for k in world.kube.objects),
        "namespaces": sorted(world.kube.namespaces),
        "release": {k: (v["revision"], v["values"]) for k, v in helm_state.items()},
    }


# What a clean run of FULL leaves (checked against a real clean run below).
CLEAN_FULL_GOOGLE = {
    "accounts": {GSA: [("roles/iam.workloadIdentityUser",
                        (f"serviceAccount:{PROJECT}.svc.id.goog[mlflow/mlflow]",))]},
    "databases": {f"{PROJECT}:my-sql": ["mysql"], f"{PROJECT}:pg": [DB, "postgres"]},
    "flags": {f"{PROJECT}:my-sql": [], f"{PROJECT}:pg": []},
    "project_policies": {PROJECT: [("roles/cloudsql.client", (f"serviceAccount:{GSA}",)),
                                   ("roles/owner", ("user:owner@x.com",))]},
    "users": {f"{PROJECT}:my-sql": [("root", "BUILT_IN")],
              f"{PROJECT}:pg": [(DB, "BUILT_IN"), ("postgres", "BUILT_IN")]},
}


def clean_full_state(world) -> dict:
    return {
        "google": CLEAN_FULL_GOOGLE,
        "bucket": [("roles/storage.legacyBucketOwner",
                    ("projectEditor:123456789012", "projectOwner:123456789012")),
                   ("roles/storage.legacyBucketReader", ("projectViewer:123456789012",)),
                   ("roles/storage.objectUser", (f"serviceAccount:{GSA}",))],
        "kube": [("secrets", "mlflow", "mlflow-db"),
                 ("secrets", "mlflow", "mlflow-helm.install.v1.mlflow")],
        "namespaces": ["default", "mlflow"],
        "release": {"mlflow/mlflow": (1, json.loads(world.helm_calls("upgrade")[0]["stdin"]))},
    }


def test_clean_run_state(world):
    do_install(world.context(**FULL))
    assert end_state(world) == clean_full_state(world)


@pytest.mark.parametrize("crash_after", [cls.name for cls in STEPS
                                         if cls.name not in ("instance-flags",
                                                             "database-grant",
                                                             "external-db-secret")])
def test_crash_after_a_step_then_rerun_converges(world, crash_after):
    def crash(step):
        if step == crash_after:
            raise Crash(step)

    # helm test is not a change: skipped here to keep the suite fast.
    ctx = world.context(**FULL, skip_tests=True)
    ctx.after_apply = crash
    with pytest.raises(Crash):
        do_install(ctx)
    do_install(world.context(**FULL, skip_tests=True))
    third = do_install(world.context(**FULL, skip_tests=True))
    assert {c.action for c in third.changes} == {"unchanged"}
    assert end_state(world) == clean_full_state(world)
    # The user's password and the Secret still agree after the crash.
    secret = world.kube.secret("mlflow", "mlflow-db")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert world.google.state.users[(PROJECT, "pg")][(DB, "")]["password"] == password


IAM = dict(database="cloudsql", cloudsql_instance="pg", db_auth="iam")


@pytest.mark.parametrize("crash_after", [None, "instance-flags", "database-grant"])
def test_iam_auth_crash_after_a_step_then_rerun_converges(world, crash_after):
    def ctx_with(crash=None):
        ctx = world.context(**IAM)
        if crash:
            def after(step):
                if step == crash:
                    raise Crash(step)
            ctx.after_apply = after
        return ctx

    if crash_after:
        with pytest.raises(Crash):
            do_install(ctx_with(crash_after))
    do_install(ctx_with())
    assert {c.action for c in do_install(ctx_with()).changes} == {"unchanged"}
    state = end_state(world, bucket=False)
    assert state["google"]["flags"][f"{PROJECT}:pg"] == [("cloudsql.iam_authentication", "on")]
    assert state["google"]["users"][f"{PROJECT}:pg"] == [
        (f"mlflow-mlflow-mlflow@{PROJECT}.iam", "CLOUD_IAM_SERVICE_ACCOUNT"),
        ("postgres", "BUILT_IN")]
    assert ("configmaps", "mlflow", "mlflow-db-grant") in state["kube"]
    assert state["release"]["mlflow/mlflow"][0] == 1
    # The marker is written with the grant, so whatever the crash, the grant ran once.
    assert len(world.kube.jobs_created) == 1
    assert world.kube.jobs == {} and ("serviceaccounts", "mlflow", "mlflow") in state["kube"]


def test_crash_before_the_secret_is_known_resets_the_password(world):
    """The user exists but its Secret was lost: a new password goes to both."""
    do_install(world.context(**FULL))
    world.kube.objects.pop(("secrets", "mlflow", "mlflow-db"))
    result = do_install(world.context(**FULL))
    actions = {(c.kind, c.action) for c in result.changes}
    assert ("cloud sql user", "update") in actions and ("secret", "create") in actions
    import base64

    secret = world.kube.secret("mlflow", "mlflow-db")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert world.google.state.users[(PROJECT, "pg")][(DB, "")]["password"] == password


def test_new_service_account_is_eventually_consistent(world):
    world.google.sa_delay = 0.3
    do_install(world.context(**FULL))
    statuses = [c.status for c in world.google.calls
                if c.op in ("serviceAccounts.getIamPolicy", "projects.setIamPolicy")]
    assert 404 in statuses or 400 in statuses  # it was not visible at first
    assert project_members(world, "roles/cloudsql.client") == [f"serviceAccount:{GSA}"]


def test_cloud_sql_operation_error_is_shown(world):
    world.google.op_errors["CREATE_DATABASE"] = "Out of disk space on instance pg."
    with pytest.raises(CloudError) as err:
        do_install(world.context(**FULL))
    assert "Out of disk space on instance pg." in err.value.message
    assert "gcloud sql operations describe op-" in err.value.hint


def test_long_waits_report_elapsed_time(world):
    import dataclasses

    world.google.op_seconds = 0.4
    ctx = world.context(database="cloudsql", cloudsql_instance="pg")
    ctx.apis.retry = dataclasses.replace(ctx.apis.retry, report_every=0.1)
    do_install(ctx)
    waits = [m for m in world.said if m.startswith(f"  … databases.insert database {DB}")]
    assert waits and all(s in ("PENDING", "RUNNING") for s in
                         (m.split(": ")[1].split(" (")[0] for m in waits))
    assert any(m.startswith(f"  databases.insert database {DB}: done in") for m in world.said)


def test_our_operations_on_one_instance_take_turns_without_409(world):
    """Flags, database and user all target one instance, which runs one operation at a
    time: ours queue in the client, each starting once the one before is DONE."""
    world.google.op_seconds = 0.3
    ctx = world.context(database="cloudsql", cloudsql_instance="pg", db_auth="iam")
    do_install(ctx)
    sql = [c for c in world.google.calls if c.api == "sqladmin"]
    assert not [c for c in sql if c.status == 409]
    started = [c for c in sql if c.instance and c.status < 400]
    # (the grant adds a temporary user and deletes it)
    assert {"instances.patch", "databases.insert", "users.insert", "users.delete"} == \
        {c.op for c in started}
    assert started.index(next(c for c in started if c.op == "instances.patch")) < \
        started.index(next(c for c in started if c.op == "users.insert"))
    for before, after in itertools.pairwise(started):
        done = next(c for c in sql if c.done and c.operation == before.operation)
        assert done.end <= after.start, (before.op, after.op)


def test_another_clients_operation_in_progress_is_waited_for(world):
    """Someone else's operation on the instance: Cloud SQL answers 409 to ours, which must
    wait its turn and then go through."""
    world.google.op_seconds = 1.5
    other = {"name": "reporting", "type": "BUILT_IN", "password": "x"}
    status, _ = world.google.handle("POST", f"/sqladmin/v1/projects/{PROJECT}/instances/pg/users",
                                    other)
    assert status == 200
    do_install(world.context(database="cloudsql", cloudsql_instance="pg", skip_tests=True))
    conflicts = [c for c in world.google.calls if c.status == 409]
    assert conflicts and all(c.op == "databases.insert" for c in conflicts)
    ops = world.google.state.operations.values()
    assert all(op["status"] == "DONE" and "error" not in op for op in ops)
    assert DB in world.google.state.databases[(PROJECT, "pg")]
    assert {"reporting", DB} <= {n for n, _ in world.google.state.users[(PROJECT, "pg")]}


def test_iam_grant_needs_no_local_tools(world, monkeypatch):
    """The grant runs in the cluster: no cloud-sql-proxy (or any database client) on the
    operator's PATH is needed."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    do_install(world.context(database="cloudsql", cloudsql_instance="pg", db_auth="iam"))
    assert ("configmaps", "mlflow", "mlflow-db-grant") in world.kube.objects


@pytest.mark.parametrize("op,role", [
    ("iam.serviceAccounts.create", "roles/iam.serviceAccountCreator"),
    ("cloudresourcemanager.projects.setIamPolicy", "roles/resourcemanager.projectIamAdmin"),
    ("sqladmin.instances.get", "roles/cloudsql.viewer"),
])
def test_permission_denied_names_the_role(world, op, role):
    world.google.inject(op, 403, message=op)
    with pytest.raises(PermissionDenied) as err:
        do_install(world.context(**FULL))
    assert role in err.value.hint
    assert "permission denied" in err.value.message


def test_bucket_permission_denied_names_the_role(world):
    world.gcs.inject("buckets.get", 403)
    with pytest.raises(PermissionDenied) as err:
        do_install(world.context(**FULL))
    assert "storage.buckets.get" in err.value.message and "roles/storage.admin" in \
        err.value.hint
