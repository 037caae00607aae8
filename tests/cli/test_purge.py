"""uninstall and --purge act on the install record: the "kept" note lists what really
exists, purge deletes exactly what this release created (database before user, only the IAM
members it added, never what it adopted, never a bucket with objects unless
--delete-artifacts), and --dry-run lists exactly that set.

The fakes answer as the real APIs do: Cloud SQL refuses to delete a PostgreSQL user that
still owns objects (tests/fakes/google.py, FakeGoogle.own), GCS refuses a bucket that is not
empty (fake-gcs-server), the Kubernetes API serves PersistentVolumeClaims
(tests/fakes/kube.py).
"""

from __future__ import annotations

import base64
import json

import pytest
from click.testing import CliRunner

from mlflow_helm.cli import main
from mlflow_helm.commands import do_install, do_uninstall
from tests.cli.conftest import PROJECT, cli_env
from tests.cli.test_install import project_members

A = dict(database="cloudsql", cloudsql_instance="pg", bucket="gs://team-a-artifacts",
         create_bucket=True, skip_tests=True)
B = dict(namespace="team-b", database="cloudsql", cloudsql_instance="pg",
         gsa="team-b-mlflow", skip_tests=True)
DB_A, DB_B = "mlflow_mlflow_mlflow", "mlflow_team_b_mlflow"
GSA_A = f"mlflow-mlflow-mlflow@{PROJECT}.iam.gserviceaccount.com"
GSA_B = f"team-b-mlflow@{PROJECT}.iam.gserviceaccount.com"
# The chart's labels on what `helm uninstall` leaves (charts/mlflow/templates/_helpers.tpl).
PG_LABELS = {"app.kubernetes.io/name": "mlflow", "app.kubernetes.io/instance": "mlflow",
             "app.kubernetes.io/component": "postgresql"}
SERVER_LABELS = {**PG_LABELS, "app.kubernetes.io/component": "server"}
KEEP = {"helm.sh/resource-policy": "keep"}


def run(world, *args, **kw):
    return CliRunner().invoke(main, list(args), env=cli_env(world), catch_exceptions=False,
                              **kw)


def migrated(world, database: str, user: str) -> None:
    """MLflow's migration Job ran as `user`: its tables in `database` are the user's."""
    world.google.own(PROJECT, "pg", user, database)


def users(world) -> set[str]:
    return {name for name, _ in world.google.state.users[(PROJECT, "pg")]}


def put_object(world, bucket: str, name: str) -> None:
    client = world.context(local=True).apis.storage()
    client.bucket(bucket).blob(name).upload_from_string(b"artifact")


def test_fake_cloud_sql_refuses_to_drop_a_user_that_owns_objects(world):
    """Cloud SQL's users.delete on PostgreSQL runs DROP ROLE: while the role owns objects in
    a database it answers 400 with PostgreSQL's error (kernelci/kcidb#407)."""
    do_install(world.context(**A))
    migrated(world, DB_A, DB_A)
    ctx = world.context(**A)
    with pytest.raises(Exception) as err:
        ctx.sql.delete_user(PROJECT, "pg", DB_A)
    assert f'role "{DB_A}" cannot be dropped because some objects depend on it' in \
        str(err.value)
    assert f"42 objects in database {DB_A}" in str(err.value)
    assert DB_A in users(world)
    ctx.sql.delete_database(PROJECT, "pg", DB_A)
    ctx.sql.delete_user(PROJECT, "pg", DB_A)  # its objects went with the database
    assert DB_A not in users(world)


def test_purge_of_one_release_leaves_the_others_database_user_and_secret(world):
    do_install(world.context(**A))
    do_install(world.context(**B))
    migrated(world, DB_A, DB_A)
    migrated(world, DB_B, DB_B)
    secret_b = world.kube.secret("team-b", "mlflow-db")
    result = run(world, "uninstall", "--purge", "--yes")
    assert result.exit_code == 0, result.output
    # The plan is printed once, before deleting; afterwards a sum, not the list again.
    assert result.output.count("- delete    cloud sql database") == 1
    assert "\nDeleted: 10.\n" in result.output  # the plan's 10, release and bucket included
    # Database before user: the user owned MLflow's tables, and Cloud SQL accepted both.
    assert DB_A not in world.google.state.databases[(PROJECT, "pg")]
    assert DB_A not in users(world)
    deletes = [c.op for c in world.google.mutating_calls() if c.op.endswith("delete")]
    assert deletes.index("databases.delete") < deletes.index("users.delete")
    assert GSA_A not in world.google.state.accounts
    assert world.kube.secret("mlflow", "mlflow-db") is None
    assert world.kube.secret("mlflow", "mlflow-helm.install.v1.mlflow") is None
    # The other release is untouched.
    assert DB_B in world.google.state.databases[(PROJECT, "pg")]
    assert DB_B in users(world)
    assert world.kube.secret("team-b", "mlflow-db") == secret_b
    password = base64.b64decode(secret_b["data"]["password"]).decode()
    assert world.google.state.users[(PROJECT, "pg")][(DB_B, "")]["password"] == password
    assert GSA_B in world.google.state.accounts
    assert project_members(world, "roles/cloudsql.client") == [f"serviceAccount:{GSA_B}"]
    assert world.kube.secret("team-b", "mlflow-helm.install.v1.mlflow") is not None


def test_adopted_resources_survive_purge(world):
    """A service account, bucket, database and user that existed before the release (and an
    IAM member that was bound already) are kept; only what the release added goes."""
    ctx = world.context(local=True)
    ctx.iam.create_service_account(PROJECT, "shared-mlflow", "made by hand")
    shared = f"shared-mlflow@{PROJECT}.iam.gserviceaccount.com"
    ctx.storage.create_bucket("shared-artifacts", PROJECT, "EU")
    ctx.sql.create_database(PROJECT, "pg", "shared_db")
    ctx.sql.create_user(PROJECT, "pg", "shared_user", "BUILT_IN", "hand-made")
    ctx.crm.ensure_member(PROJECT, "roles/cloudsql.client", f"serviceAccount:{shared}")
    args = ["--database", "cloudsql", "--cloudsql-instance", "pg", "--gsa", "shared-mlflow",
            "--bucket", "gs://shared-artifacts", "--database-name", "shared_db",
            "--db-user", "shared_user", "--adopt", "--skip-tests"]
    installed = run(world, "install", *args)
    assert installed.exit_code == 0, installed.output
    migrated(world, "shared_db", "shared_user")
    dry = run(world, "uninstall", "--purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    deleted = [line.split()[2:] for line in dry.output.splitlines()
               if line.strip().startswith("- delete")]
    kinds = {" ".join(d[:2]) for d in deleted}
    assert "google service account" not in " ".join(" ".join(d) for d in deleted)
    assert "gcs bucket" not in kinds and "cloud sql" not in " ".join(kinds)
    assert f"google service account {shared}: adopted" in dry.output
    result = run(world, "uninstall", "--purge", "--yes")
    assert result.exit_code == 0, result.output
    assert shared in world.google.state.accounts
    assert world.gcs._bucket_exists("shared-artifacts")
    assert "shared_db" in world.google.state.databases[(PROJECT, "pg")]
    assert "shared_user" in users(world)
    # Bound before the install: kept. Added by it (the bucket role, Workload Identity): gone.
    assert project_members(world, "roles/cloudsql.client") == [f"serviceAccount:{shared}"]
    assert world.gcs.members("shared-artifacts", "roles/storage.objectUser") == []
    policy = world.google.state.accounts[shared]["policy"]
    assert not any(b["role"] == "roles/iam.workloadIdentityUser"
                   for b in policy.get("bindings", []) if b.get("members"))
    # The password Secret is this release's (it re-passworded the adopted user: --adopt).
    assert world.kube.secret("mlflow", "mlflow-db") is None


def test_a_bucket_with_artifacts_is_kept_unless_delete_artifacts(world):
    do_install(world.context(**A))
    put_object(world, "team-a-artifacts", "1/abc/artifacts/model.pkl")
    result = run(world, "uninstall", "--purge", "--yes")
    assert result.exit_code == 0, result.output
    assert "gcs bucket gs://team-a-artifacts: holds 1 objects (MLflow's artifacts); " \
        "--delete-artifacts deletes them too" in result.output
    assert world.gcs._bucket_exists("team-a-artifacts")
    assert world.gcs.members("team-a-artifacts", "roles/storage.objectUser") == []
    # The record stays for what was kept, so a second purge can finish the job.
    again = run(world, "uninstall", "--purge", "--delete-artifacts", "--yes")
    assert again.exit_code == 0, again.output
    assert "- delete    gcs bucket                   gs://team-a-artifacts  (and its 1 " \
        "objects)" in again.output
    assert not world.gcs._bucket_exists("team-a-artifacts")


def local_leftovers(world) -> None:
    """What the chart leaves after `helm uninstall` of a --local release: the StatefulSet's
    claim (persistentVolumeClaimRetentionPolicy Retain), the artifacts claim and the password
    Secret (helm.sh/resource-policy: keep)."""
    world.kube.add_claim("mlflow", "data-mlflow-postgresql-0", PG_LABELS)
    world.kube.add_claim("mlflow", "mlflow-artifacts", SERVER_LABELS, KEEP)
    world.kube.add_secret("mlflow", "mlflow-postgresql", {"password": "x"},
                          {**PG_LABELS, "app.kubernetes.io/part-of": "mlflow"}, KEEP)
    # Someone else's claim and Secret in the namespace: never touched.
    world.kube.add_claim("mlflow", "notebooks", {"app": "jupyter"})
    world.kube.add_secret("mlflow", "other", {"k": "v"}, {"app": "jupyter"}, KEEP)


def claims(world) -> set[str]:
    return {n for k, ns, n in world.kube.objects if k == "persistentvolumeclaims"}


def test_local_uninstall_lists_the_volumes_it_keeps(world):
    do_install(world.context(local=True, skip_tests=True))
    local_leftovers(world)
    result = run(world, "uninstall")
    assert result.exit_code == 0, result.output
    kept = result.output.split("note: kept", 1)[1]
    assert "persistentvolumeclaim mlflow/data-mlflow-postgresql-0 (database volume)" in kept
    assert "persistentvolumeclaim mlflow/mlflow-artifacts (artifacts volume)" in kept
    assert "chart secret mlflow/mlflow-postgresql (database password)" in kept
    assert "notebooks" not in kept and "other" not in kept
    assert claims(world) == {"data-mlflow-postgresql-0", "mlflow-artifacts", "notebooks"}


def test_local_purge_deletes_the_database_volume_and_secret_it_promises(world):
    do_install(world.context(local=True, skip_tests=True))
    local_leftovers(world)
    before = len(world.mutating())
    dry = run(world, "uninstall", "--purge", "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    planned = [(c["kind"], c["name"]) for c in json.loads(dry.output)["changes"]
               if c["action"] == "delete"]
    assert planned == [("helm release", "mlflow/mlflow"),
                       ("persistentvolumeclaim", "mlflow/data-mlflow-postgresql-0"),
                       ("chart secret", "mlflow/mlflow-postgresql"),
                       ("install record", "mlflow/mlflow-helm.install.v1.mlflow")]
    assert len(world.mutating()) == before
    result = run(world, "uninstall", "--purge", "--yes")
    assert result.exit_code == 0, result.output
    assert claims(world) == {"mlflow-artifacts", "notebooks"}
    assert world.kube.secret("mlflow", "mlflow-postgresql") is None
    assert world.kube.secret("mlflow", "other") is not None
    assert "artifacts volume): MLflow's artifacts; --delete-artifacts" in result.output
    # What purge reported deleting is what is gone, nothing more.
    deleted = [c.key for c in world.kube.mutating_calls() if c.method == "DELETE"]
    assert deleted == ["ns/mlflow/persistentvolumeclaims/data-mlflow-postgresql-0",
                       "ns/mlflow/secrets/mlflow-postgresql",
                       "ns/mlflow/secrets/mlflow-helm.install.v1.mlflow"]


def test_purge_dry_run_lists_only_what_exists(world):
    do_install(world.context(**A))
    # Gone by hand already: not listed.
    world.kube.objects.pop(("secrets", "mlflow", "mlflow-db"))
    before = len(world.mutating())
    result = do_uninstall(world.context(**A, dry_run=True), purge=True, confirm=None)
    names = [(c.kind, c.name) for c in result.changes if c.action == "delete"]
    assert ("secret", "mlflow/mlflow-db") not in names
    assert ("cloud sql database", DB_A) in names and ("cloud sql user", DB_A) in names
    assert len(world.mutating()) == before


def test_purge_keeps_a_user_cloud_sql_will_not_drop_and_says_why(world):
    """The database was adopted (kept), the user created: the user still owns MLflow's
    tables there, so Cloud SQL refuses, and purge keeps it, its password Secret and the
    record."""
    ctx = world.context(local=True)
    ctx.sql.create_database(PROJECT, "pg", "shared_db")
    install = run(world, "install", "--database", "cloudsql", "--cloudsql-instance", "pg",
                  "--database-name", "shared_db", "--adopt", "--skip-tests")
    assert install.exit_code == 0, install.output
    migrated(world, "shared_db", DB_A)
    result = run(world, "uninstall", "--purge", "--yes")
    assert result.exit_code == 0, result.output
    assert f'kept: Invalid request: failed to delete user {DB_A}: . role "{DB_A}" cannot ' \
        "be dropped because some objects depend on it" in result.output
    assert DB_A in users(world) and "shared_db" in world.google.state.databases[(PROJECT,
                                                                                 "pg")]
    assert world.kube.secret("mlflow", "mlflow-db") is not None
    assert world.kube.secret("mlflow", "mlflow-helm.install.v1.mlflow") is not None


def test_a_service_account_and_bucket_another_release_adopted_survive_the_creators_purge(
        world):
    """Release A creates `--gsa shared-mlflow` and its bucket; release B, in another
    namespace, runs as the same account on the same bucket (`--adopt`). Purging A must not
    delete what B runs as: the account's IAM policy still grants B's Workload Identity member
    (roles/iam.workloadIdentityUser for PROJECT.svc.id.goog[team-b/mlflow], the member
    format of https://cloud.google.com/kubernetes-engine/docs/how-to/workload-identity), so
    the account, the roles it was granted and the bucket it writes to are kept, and the
    record stays so a later --purge (after B's) finishes the job."""
    shared = f"shared-mlflow@{PROJECT}.iam.gserviceaccount.com"
    a = run(world, "install", "--gsa", "shared-mlflow", "--bucket", "gs://team-a-artifacts",
            "--create-bucket", "--skip-tests")
    assert a.exit_code == 0, a.output
    b = run(world, "install", "-n", "team-b", "--gsa", "shared-mlflow", "--bucket",
            "gs://team-a-artifacts", "--adopt", "--skip-tests")
    assert b.exit_code == 0, b.output
    wi_b = f"serviceAccount:{PROJECT}.svc.id.goog[team-b/mlflow]"

    dry = run(world, "uninstall", "--purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"google service account {shared}: still granted to {wi_b}" in dry.output
    assert "gcs bucket gs://team-a-artifacts: its service account is kept" in dry.output
    deleted = [line for line in dry.output.splitlines() if line.strip().startswith("- delete")]
    assert not any(shared in line and "iam binding roles/storage" in line for line in deleted)
    assert any("svc.id.goog[mlflow/mlflow]" in line for line in deleted)  # A's own member
    # The record lists what stays, for the later --purge: the plan does not promise to delete
    # it.
    assert not any("install record" in line for line in deleted), dry.output
    assert "install record mlflow/mlflow-helm.install.v1.mlflow: stays" in dry.output

    purged = run(world, "uninstall", "--purge", "--yes")
    assert purged.exit_code == 0, purged.output
    assert shared in world.google.state.accounts
    assert world.gcs._bucket_exists("team-a-artifacts")
    assert world.gcs.members("team-a-artifacts", "roles/storage.objectUser") == \
        [f"serviceAccount:{shared}"]
    wi = [m for bnd in world.google.state.accounts[shared]["policy"].get("bindings", [])
          if bnd["role"] == "roles/iam.workloadIdentityUser" for m in bnd["members"]]
    assert wi == [wi_b]
    # B purges (it adopted both: keeps them); then A's second purge deletes them.
    assert run(world, "uninstall", "-n", "team-b", "--purge", "--yes").exit_code == 0
    assert shared in world.google.state.accounts
    again = run(world, "uninstall", "--purge", "--yes")
    assert again.exit_code == 0, again.output
    assert shared not in world.google.state.accounts
    assert not world.gcs._bucket_exists("team-a-artifacts")
