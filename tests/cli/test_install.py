"""Fresh installs in every mode, re-runs, and --dry-run, through do_install against the fakes.

Assertions are on what a user (or the cluster) would see: the exact `helm upgrade`
arguments and values, the Google resources in the fakes, the Secrets in the fake
Kubernetes API, and the number of mutating calls.
"""

from __future__ import annotations

import base64
import json
import string

import pytest

from mlflow_helm.commands import do_install
from mlflow_helm.errors import UserError
from tests.cli.conftest import PROJECT
from tests.fakes.kube import is_lock

# The derived default database and user of release mlflow in namespace mlflow.
DB = "mlflow_mlflow_mlflow"
GSA = f"mlflow-mlflow-mlflow@{PROJECT}.iam.gserviceaccount.com"
KSA_MEMBER = f"serviceAccount:{PROJECT}.svc.id.goog[mlflow/mlflow]"


def upgrade_call(world) -> tuple[list[str], dict]:
    calls = world.helm_calls("upgrade")
    assert len(calls) == 1, calls
    return calls[0]["argv"], json.loads(calls[0]["stdin"])


def project_members(world, role: str) -> list[str]:
    policy = world.google.state.projects[PROJECT]["policy"]
    return sorted(m for b in policy.get("bindings", []) if b["role"] == role
                  for m in b["members"])


def test_local_mode_needs_no_google_cloud(world):
    ctx = world.context(local=True)
    result = do_install(ctx)
    argv, values = upgrade_call(world)
    assert values == {}
    assert argv[:2] == ["upgrade", "mlflow"] and argv[2].endswith("mlflow_helm/chart")
    assert argv[argv.index("--namespace") + 1] == "mlflow"
    assert "--rollback-on-failure" in argv  # the stand-in's version is Helm 4
    assert world.google.calls == [] and world.gcs.calls == []
    assert result.tests["passed"]
    assert [c["check"] for c in result.tests["checks"][:2]] == ["health", "version (3.17.2)"]
    assert "mlflow" in world.kube.namespaces


def test_cloudsql_password_gcs_gsa(world):
    ctx = world.context(database="cloudsql", cloudsql_instance="pg",
                        bucket="gs://team-artifacts/mlflow", create_bucket=True)
    do_install(ctx)
    argv, values = upgrade_call(world)
    assert values == {
        "serviceAccount": {"gcpServiceAccount": GSA},
        "artifacts": {"type": "gcs", "gcs": {"bucket": "team-artifacts", "path": "mlflow"}},
        "database": {"type": "cloudsql", "cloudsql": {
            "instanceConnectionName": f"{PROJECT}:europe-west1:pg", "engine": "postgres",
            "auth": "password", "ipType": "private", "database": DB,
            "user": DB, "existingSecret": "mlflow-db", "secretKey": "password"}},
    }
    assert argv[-2:] == ["--kubeconfig", str(world.kubeconfig)]
    # Google side: the account, its Workload Identity binding, the roles, DB and user.
    assert GSA in world.google.state.accounts
    wi = world.google.state.accounts[GSA]["policy"]["bindings"]
    assert wi == [{"role": "roles/iam.workloadIdentityUser", "members": [KSA_MEMBER]}]
    assert project_members(world, "roles/cloudsql.client") == [f"serviceAccount:{GSA}"]
    assert project_members(world, "roles/owner") == ["user:owner@x.com"]  # kept
    assert DB in world.google.state.databases[(PROJECT, "pg")]
    users = world.google.state.users[(PROJECT, "pg")]
    user = users[(DB, "")]
    # The password in the Secret is the Cloud SQL user's, made of URI-unreserved characters
    # (RFC 3986 2.3: the chart expands it into a MySQL URI unencoded).
    secret = world.kube.secret("mlflow", "mlflow-db")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert password == user["password"] and len(password) >= 32
    assert set(password) <= set(string.ascii_letters + string.digits + "-._~")
    # Bucket: created with uniform access and versioning; the role is bucket-level.
    assert world.gcs.members("team-artifacts", "roles/storage.objectUser") == \
        [f"serviceAccount:{GSA}"]
    assert world.gcs.members("team-artifacts", "roles/storage.legacyBucketOwner")  # kept
    bucket = ctx.storage.get_bucket("team-artifacts")
    assert bucket["versioning"] is True and bucket["ubla"] is True
    assert world.gcs.iam_config["team-artifacts"]["publicAccessPrevention"] == "enforced"
    assert project_members(world, "roles/storage.objectUser") == []


def test_rerun_makes_no_mutating_call(world):
    opts = dict(database="cloudsql", cloudsql_instance="pg", bucket="gs://team-artifacts",
                create_bucket=True)
    do_install(world.context(**opts))
    first = (world.google.counts(), world.gcs.counts(),
             {"kube": len(world.kube.calls), "kube_mutating": len(world.kube.mutating_calls())})
    before = len(world.google.calls), len(world.gcs.calls), len(world.kube.calls)
    result = do_install(world.context(**opts))
    assert {c.action for c in result.changes} == {"unchanged"}, [c.line() for c in
                                                                 result.changes]
    new_google = world.google.calls[before[0]:]
    new_gcs = world.gcs.calls[before[1]:]
    new_kube = world.kube.calls[before[2]:]
    # The run's lock (a Lease, taken and given back) is no change to the release.
    assert [c for c in new_google + new_gcs + new_kube if c.mutating and not is_lock(c)] == []
    assert [(c.method, c.status) for c in new_kube if is_lock(c)] == [("POST", 201),
                                                                      ("DELETE", 200)]
    assert len(world.helm_calls("upgrade")) == 1  # the release was not upgraded again
    assert len(world.helm_calls("test")) == 2  # but it was tested again
    # Recorded for the docs: read/mutating calls of a first install and of a re-run.
    print("first", first, "rerun", {"google": len(new_google), "gcs": len(new_gcs),
                                    "kube": len(new_kube)})


def grant_jobs(world) -> list[dict]:
    """The grant Jobs the CLI created (tests/fakes/kube.py runs them; their SQL runs against
    a real PostgreSQL in test_dbgrant.py and in the e2e suite)."""
    return [j for j in world.kube.jobs_created
            if j["metadata"]["labels"].get("mlflow-helm/role") == "db-grant"]


def grant_env(job: dict) -> dict:
    container = job["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_cloudsql_iam_postgres_grants_once(world):
    ctx = world.context(database="cloudsql", cloudsql_instance=f"{PROJECT}:europe-west1:pg",
                        db_auth="iam")
    result = do_install(ctx)
    _, values = upgrade_call(world)
    user = f"mlflow-mlflow-mlflow@{PROJECT}.iam"
    assert values["database"]["cloudsql"] == {
        "instanceConnectionName": f"{PROJECT}:europe-west1:pg", "engine": "postgres",
        "auth": "iam", "ipType": "private", "database": DB, "user": user}
    flags = world.google.state.instances[(PROJECT, "pg")]["settings"]["databaseFlags"]
    assert {"name": "cloudsql.iam_authentication", "value": "on"} in flags
    users = world.google.state.users[(PROJECT, "pg")]
    assert users[(user, "")]["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    assert "mlflow-helm-grant" not in {name for name, _ in users}  # temporary user gone
    assert project_members(world, "roles/cloudsql.instanceUser") == [f"serviceAccount:{GSA}"]
    assert project_members(world, "roles/cloudsql.client") == [f"serviceAccount:{GSA}"]
    # The grant ran as a Job in the cluster, through the proxy on the instance's private IP,
    # as the release's ServiceAccount; Job, pod and password Secret are gone afterwards.
    [job] = grant_jobs(world)
    env = grant_env(job)
    assert env["MLFLOW_GRANT_GRANTEE"] == user and env["MLFLOW_GRANT_DATABASE"] == DB
    assert env["MLFLOW_GRANT_URI"] == \
        f"postgresql+psycopg://mlflow-helm-grant@127.0.0.1:5432/{DB}"
    spec = job["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "mlflow"
    proxy = spec["initContainers"][0]
    assert "--private-ip" in proxy["args"] and "--auto-iam-authn" not in proxy["args"]
    assert world.kube.jobs == {} and world.kube.pods == {}
    assert world.kube.secret("mlflow", "mlflow-db-grant") is None
    assert world.kube.secret("mlflow", "mlflow-db") is None  # no password anywhere
    # The ServiceAccount was made before the release, marked for Helm to adopt.
    sa = world.kube.objects[("serviceaccounts", "mlflow", "mlflow")]
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == GSA
    assert sa["metadata"]["annotations"]["meta.helm.sh/release-name"] == "mlflow"
    assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert any(c.kind == "database owner" and c.action == "create" for c in result.changes)
    # Re-run: the grant is recorded, nothing is done again.
    again = do_install(world.context(database="cloudsql", cloudsql_instance="pg",
                                     db_auth="iam"))
    assert {c.action for c in again.changes} == {"unchanged"}
    assert len(grant_jobs(world)) == 1


def test_failed_grant_job_reports_its_log_and_cleans_up(world):
    world.kube.job_runner = lambda job, fake: (
        False, "[mlflow-db] ERROR: grant to x on database y failed: permission denied")
    with pytest.raises(UserError) as err:
        do_install(world.context(database="cloudsql", cloudsql_instance="pg", db_auth="iam"))
    assert "the grant Job mlflow/mlflow-db-grant failed" in err.value.message
    assert "permission denied" in err.value.message
    assert world.kube.jobs == {} and world.kube.pods == {}
    assert world.kube.secret("mlflow", "mlflow-db-grant") is None
    assert "mlflow-helm-grant" not in {n for n, _ in world.google.state.users[(PROJECT, "pg")]}
    # Not recorded as done: the next run grants again.
    assert ("configmaps", "mlflow", "mlflow-db-grant") not in world.kube.objects


def test_cloudsql_iam_mysql(world):
    ctx = world.context(database="cloudsql", cloudsql_instance="my-sql", db_auth="iam",
                        gsa="tracking")
    do_install(ctx)
    _, values = upgrade_call(world)
    assert values["database"]["cloudsql"]["engine"] == "mysql"
    assert values["database"]["cloudsql"]["user"] == "tracking"
    assert values["database"]["cloudsql"]["ipType"] == "public"
    assert values["serviceAccount"]["gcpServiceAccount"] == \
        f"tracking@{PROJECT}.iam.gserviceaccount.com"
    flags = {f["name"]: f["value"] for f in world.google.state.instances[
        (PROJECT, "my-sql")]["settings"]["databaseFlags"]}
    # IAM login and the flag MLflow's MySQL triggers need with binary logging on.
    assert flags == {"cloudsql_iam_authentication": "on",
                     "log_bin_trust_function_creators": "on"}
    users = world.google.state.users[(PROJECT, "my-sql")]
    assert users[("tracking", "")]["type"] == "CLOUD_IAM_SERVICE_ACCOUNT"
    # A new MySQL IAM user has no privileges ("Log in using IAM database authentication"):
    # the grant Job gives it MLflow's (db.py grant, run against MariaDB in the e2e suite).
    [job] = grant_jobs(world)
    env = grant_env(job)
    assert env["MLFLOW_GRANT_ENGINE"] == "mysql" and env["MLFLOW_GRANT_GRANTEE"] == "tracking"
    assert env["MLFLOW_GRANT_URI"].startswith(
        "mysql+pymysql://mlflow-helm-grant:$(MLFLOW_DB_PASSWORD)@127.0.0.1:3306/")
    assert "mlflow-helm-grant" not in {name for name, _ in users}
    assert world.kube.jobs == {}


def test_second_release_on_a_shared_instance_gets_its_own_user(world):
    do_install(world.context(database="cloudsql", cloudsql_instance="pg"))
    first = world.google.state.users[(PROJECT, "pg")][(DB, "")]["password"]
    ctx = world.context(release="team-b", namespace="team-b", database="cloudsql",
                        cloudsql_instance="pg", database_name="team_b", db_user="team-b",
                        gsa="team-b-mlflow")
    do_install(ctx)
    users = world.google.state.users[(PROJECT, "pg")]
    # The first release still logs in.
    assert users[(DB, "")]["password"] == first
    assert ("team-b", "") in users
    values = json.loads(world.helm_calls("upgrade")[-1]["stdin"])
    assert values["database"]["cloudsql"]["user"] == "team-b"
    assert values["database"]["cloudsql"]["existingSecret"] == "team-b-mlflow-db"


def test_incluster_database_with_gcs_artifacts(world):
    do_install(world.context(bucket="gs://team-artifacts", create_bucket=True))
    _, values = upgrade_call(world)
    assert "database" not in values
    assert values["artifacts"]["gcs"]["bucket"] == "team-artifacts"
    assert world.google.state.instances[(PROJECT, "pg")]["settings"]["databaseFlags"] == []
    assert project_members(world, "roles/cloudsql.client") == []


def test_external_database_keeps_the_uri_in_a_secret(world):
    uri = "postgresql+psycopg2://mlflow:s3cret@db.internal:5432/mlflow"
    result = do_install(world.context(database="external", external_uri=uri))
    _, values = upgrade_call(world)
    assert values["database"] == {"type": "external", "external": {
        "existingSecret": "mlflow-db", "uriKey": "uri"}}
    secret = world.kube.secret("mlflow", "mlflow-db")
    assert base64.b64decode(secret["data"]["uri"]).decode() == uri
    assert "s3cret" not in json.dumps(result.to_json())
    assert world.google.calls == []


def test_direct_identity_grants_the_kubernetes_principal(world):
    do_install(world.context(database="cloudsql", cloudsql_instance="pg", identity="direct",
                             bucket="gs://team-artifacts", create_bucket=True,
                             namespace="ml"))
    _, values = upgrade_call(world)
    assert "serviceAccount" not in values  # no GSA annotation
    principal = ("principal://iam.googleapis.com/projects/123456789012/locations/global/"
                 f"workloadIdentityPools/{PROJECT}.svc.id.goog/subject/ns/ml/sa/mlflow")
    assert project_members(world, "roles/cloudsql.client") == [principal]
    assert world.gcs.members("team-artifacts", "roles/storage.objectUser") == [principal]
    assert world.google.state.accounts == {}


def test_direct_identity_falls_back_to_a_gsa_for_iam_db_auth(world):
    ctx = world.context(database="cloudsql", cloudsql_instance="pg", identity="direct",
                        db_auth="iam")
    result = do_install(ctx)
    assert GSA in world.google.state.accounts
    assert any("IAM database authentication logs in as a Google service account" in n
               for n in result.notes)


def test_changed_values_upgrade_the_release(world, tmp_path):
    do_install(world.context(local=True))
    mine = tmp_path / "mine.yaml"
    mine.write_text("replicaCount: 1\nserver:\n  workers: 4\n")
    result = do_install(world.context(local=True, values_files=[str(mine)]))
    release = next(c for c in result.changes if c.kind == "helm release")
    assert release.action == "update" and "values changed" in release.detail
    assert len(world.helm_calls("upgrade")) == 2
    assert json.loads(world.state.read_text())["mlflow/mlflow"]["revision"] == 2
    again = do_install(world.context(local=True, values_files=[str(mine)]))
    assert {c.action for c in again.changes} == {"unchanged"}


def test_naming_overrides_follow_into_workload_identity(world, tmp_path):
    mine = tmp_path / "names.yaml"
    mine.write_text("fullnameOverride: tracking\n")
    do_install(world.context(bucket="gs://team-artifacts", create_bucket=True,
                             values_files=[str(mine)], set_values=["serviceAccount.name=ml-sa"],
                             gsa="tracking-gsa"))
    email = f"tracking-gsa@{PROJECT}.iam.gserviceaccount.com"
    bindings = world.google.state.accounts[email]["policy"]["bindings"]
    # The pods run as the ServiceAccount the chart will name, so that one is bound.
    assert bindings == [{"role": "roles/iam.workloadIdentityUser",
                         "members": [f"serviceAccount:{PROJECT}.svc.id.goog[mlflow/ml-sa]"]}]


def test_dry_run_changes_nothing(world):
    ctx = world.context(database="cloudsql", cloudsql_instance="pg",
                        bucket="gs://team-artifacts", create_bucket=True, dry_run=True)
    result = do_install(ctx)
    assert [c.action for c in result.changes].count("create") >= 8
    assert world.mutating() == []
    assert world.helm_calls("upgrade") == [] and world.helm_calls("test") == []
    assert result.dry_run and result.tests is None


def test_user_values_win_over_computed_ones(world, tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("artifacts:\n  serve: false\nreplicaCount: 2\n")
    ctx = world.context(bucket="gs://team-artifacts", create_bucket=True,
                        values_files=[str(mine)], set_values=["server.workers=3"])
    do_install(ctx)
    argv, _ = upgrade_call(world)
    # Ours on stdin first, then the user's file and --set: Helm merges left to right.
    i = argv.index("--values")
    assert argv[i:i + 4] == ["--values", "-", "--values", str(mine)]
    assert argv[argv.index("--set") + 1] == "server.workers=3"
    state = json.loads(world.state.read_text())["mlflow/mlflow"]["values"]
    assert state["artifacts"]["serve"] is False and state["artifacts"]["type"] == "gcs"
    assert state["server"]["workers"] == 3


def test_failed_helm_test_shows_the_failing_check_and_a_hint(world, monkeypatch):
    from mlflow_helm.errors import HelmFailed

    monkeypatch.setenv("HELM_TEST_RESULT", "fail")
    with pytest.raises(HelmFailed) as err:
        do_install(world.context(local=True))
    assert "FAIL  artifact upload, download, delete: upload of" in err.value.message
    assert "mlflow-helm test mlflow -n mlflow" in err.value.hint


