"""The install record: re-runs reuse the recorded settings, a changed setting is a change
that needs a yes, an identical re-run (with -f and --set) makes no Helm revision, and two
releases on one Cloud SQL instance never share a database or a user.

The record is a Secret in the release's namespace (record.py); the fake Kubernetes API
serves Secrets with the semantics of the real one (create 201, 409 AlreadyExists, replace,
404 NotFound as Status objects, see tests/fakes/kube.py).
"""

from __future__ import annotations

import base64
import json

from click.testing import CliRunner

from mlflow_helm.cli import main
from mlflow_helm.commands import do_install
from tests.cli.conftest import PROJECT, cli_env

FIRST = ["install", "-n", "gke", "--database", "cloudsql", "--cloudsql-instance", "pg",
         "--bucket", "gs://acme-mlflow-artifacts", "--create-bucket", "--skip-tests"]


def run(world, *args, **kw):
    return CliRunner().invoke(main, list(args), env=cli_env(world), catch_exceptions=False,
                              **kw)


def upgrades(world) -> list[dict]:
    return [json.loads(c["stdin"]) for c in world.helm_calls("upgrade")]


def revision(world, ns="gke", release="mlflow") -> int:
    return json.loads(world.state.read_text())[f"{ns}/{release}"]["revision"]


def record_of(world, ns="gke", release="mlflow") -> dict:
    secret = world.kube.secret(ns, f"mlflow-helm.install.v1.{release}")
    return json.loads(base64.b64decode(secret["data"]["record.json"]))


def test_forgotten_flags_keep_the_release_values(world):
    first = run(world, *FIRST)
    assert first.exit_code == 0, first.output
    recorded = record_of(world)
    assert recorded["settings"]["database"] == "cloudsql"
    assert recorded["settings"]["bucket"] == "gs://acme-mlflow-artifacts"
    created = {(r["kind"], r["name"]) for r in recorded["resources"]
               if r["origin"] == "created"}
    assert ("cloud sql database", "mlflow_gke_mlflow") in created
    assert ("gcs bucket", "gs://acme-mlflow-artifacts") in created
    # Nothing secret: the password lives in its own Secret, never in the record.
    password = base64.b64decode(world.kube.secret("gke", "mlflow-db")["data"]["password"])
    assert password.decode() not in json.dumps(recorded)
    mutations = len(world.mutating())
    again = run(world, "install", "-n", "gke", "--skip-tests")
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output
    assert len(upgrades(world)) == 1 and revision(world) == 1  # no new Helm revision
    assert len(world.mutating()) == mutations
    assert upgrades(world)[0]["database"]["type"] == "cloudsql"


def test_a_changed_data_store_is_refused_without_a_terminal_and_yes(world):
    assert run(world, *FIRST).exit_code == 0
    mutations = len(world.mutating())
    result = run(world, "install", "-n", "gke", "--bucket", "gs://other-artifacts",
                 "--create-bucket")
    assert result.exit_code == 2, result.output
    assert "~ --bucket: gs://acme-mlflow-artifacts -> gs://other-artifacts" in result.output
    assert "--bucket differs from the install record of gke/mlflow" in result.output
    assert "pass --yes" in result.output
    assert len(world.mutating()) == mutations and len(upgrades(world)) == 1
    ok = run(world, "install", "-n", "gke", "--bucket", "gs://other-artifacts",
             "--create-bucket", "--yes", "--skip-tests")
    assert ok.exit_code == 0, ok.output
    assert upgrades(world)[-1]["artifacts"]["gcs"]["bucket"] == "other-artifacts"
    # The database settings still come from the record.
    assert upgrades(world)[-1]["database"]["cloudsql"]["database"] == "mlflow_gke_mlflow"
    assert record_of(world)["settings"]["bucket"] == "gs://other-artifacts"


def test_identical_rerun_with_values_file_and_set_is_unchanged(world, tmp_path):
    values = tmp_path / "v.yaml"
    values.write_text("server:\n  workers: 3\n")
    args = ["install", "--local", "-f", str(values), "--set", "server.workers=2",
            "--skip-tests"]
    assert run(world, *args).exit_code == 0
    again = run(world, *args)
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output
    assert len(world.helm_calls("upgrade")) == 1 and revision(world, "mlflow") == 1
    # Without -f/--set the recorded layer is reused, still without a new revision.
    bare = run(world, "install", "--skip-tests")
    assert bare.exit_code == 0, bare.output
    assert len(world.helm_calls("upgrade")) == 1
    changed = run(world, "install", "--set", "server.workers=3", "--skip-tests")
    assert changed.exit_code == 0, changed.output
    # Passing --set (or -f) replaces the recorded layer, as `helm upgrade` without
    # --reuse-values does.
    state = json.loads(world.state.read_text())["mlflow/mlflow"]
    assert state["values"]["server"] == {"workers": 3} and state["revision"] == 2


def test_values_the_chart_refuses_fail_before_any_change(world, tmp_path):
    result = run(world, "install", "--database", "cloudsql", "--cloudsql-instance", "pg",
                 "--set", "replicaCount=2")
    assert result.exit_code == 2, result.output
    assert "the chart refuses these values" in result.output
    assert "artifacts.type=pvc with 2 replicas" in result.output
    assert world.mutating() == [] and world.helm_calls("upgrade") == []


def test_a_typo_in_values_fails_before_any_change(world, tmp_path):
    values = tmp_path / "typo.yaml"
    values.write_text("sever:\n  workers: 2\n")
    result = run(world, "install", "--database", "cloudsql", "--cloudsql-instance", "pg",
                 "--bucket", "gs://team-artifacts", "--create-bucket", "-f", str(values))
    assert result.exit_code == 2, result.output
    assert "values: (top level): Additional properties are not allowed ('sever'" in \
        result.output
    assert world.mutating() == [] and world.helm_calls("upgrade") == []
    bad_type = run(world, "install", "--local", "--set", "replicaCount=many")
    assert bad_type.exit_code == 2, bad_type.output
    assert "values: replicaCount: 'many' is not of type 'integer'" in bad_type.output
    assert world.mutating() == []


def test_two_releases_on_one_instance_stay_independent(world):
    do_install(world.context(database="cloudsql", cloudsql_instance="pg", skip_tests=True))
    do_install(world.context(release="mlflow", namespace="team-b", database="cloudsql",
                             cloudsql_instance="pg", gsa="team-b-mlflow", skip_tests=True))
    users = world.google.state.users[(PROJECT, "pg")]
    assert {"mlflow_mlflow_mlflow", "mlflow_team_b_mlflow"} <= {n for n, _ in users}
    assert {"mlflow_mlflow_mlflow", "mlflow_team_b_mlflow"} <= set(
        world.google.state.databases[(PROJECT, "pg")])
    for ns, user in (("mlflow", "mlflow_mlflow_mlflow"), ("team-b", "mlflow_team_b_mlflow")):
        secret = world.kube.secret(ns, "mlflow-db")
        password = base64.b64decode(secret["data"]["password"]).decode()
        assert users[(user, "")]["password"] == password  # each Secret matches its user


def test_another_releases_database_and_user_need_adopt(world):
    do_install(world.context(database="cloudsql", cloudsql_instance="pg", skip_tests=True))
    before = world.google.state.users[(PROJECT, "pg")][("mlflow_mlflow_mlflow", "")]
    mutations = len(world.mutating())
    result = run(world, "install", "-n", "team-b", "--database", "cloudsql",
                 "--cloudsql-instance", "pg", "--gsa", "team-b-mlflow",
                 "--database-name", "mlflow_mlflow_mlflow", "--db-user", "mlflow_mlflow_mlflow")
    assert result.exit_code == 2, result.output
    assert "cloud sql database mlflow_mlflow_mlflow, cloud sql user mlflow_mlflow_mlflow " \
        "already exist(s) and are not in the install record of team-b/mlflow" in result.output
    assert "--adopt" in result.output
    assert len(world.mutating()) == mutations
    assert world.google.state.users[(PROJECT, "pg")][("mlflow_mlflow_mlflow", "")] == before


def wi_members(world, email: str) -> list[str]:
    policy = world.google.state.accounts[email]["policy"]
    return sorted(m for b in policy.get("bindings", [])
                  if b["role"] == "roles/iam.workloadIdentityUser" for m in b["members"])


def test_releases_in_two_namespaces_get_their_own_service_accounts(world):
    """The default Google service account is per release (mlflow-NAMESPACE-RELEASE, as the
    database names are): purging one release cannot delete the identity the other runs as."""
    a = f"mlflow-mlflow-mlflow@{PROJECT}.iam.gserviceaccount.com"
    b = f"mlflow-team-b-mlflow@{PROJECT}.iam.gserviceaccount.com"
    do_install(world.context(database="cloudsql", cloudsql_instance="pg", skip_tests=True))
    do_install(world.context(namespace="team-b", database="cloudsql", cloudsql_instance="pg",
                             skip_tests=True))
    assert wi_members(world, a) == [f"serviceAccount:{PROJECT}.svc.id.goog[mlflow/mlflow]"]
    assert wi_members(world, b) == [f"serviceAccount:{PROJECT}.svc.id.goog[team-b/mlflow]"]
    purged = run(world, "uninstall", "--purge", "--yes")
    assert purged.exit_code == 0, purged.output
    assert a not in world.google.state.accounts and b in world.google.state.accounts
    assert wi_members(world, b) == [f"serviceAccount:{PROJECT}.svc.id.goog[team-b/mlflow]"]


def test_a_long_namespace_and_release_give_a_valid_account_name(world):
    """IAM account ids are 6-30 characters, [a-z][-a-z0-9]*[a-z0-9] (iam v1 discovery
    document, projects.serviceAccounts.create accountId): the default is cut with a hash."""
    from mlflow_helm.options import GSA_RE, default_gsa_name

    long_a = default_gsa_name("data-science-platform", "tracking-server-a")
    long_b = default_gsa_name("data-science-platform", "tracking-server-b")
    assert long_a != long_b and len(long_a) == len(long_b) == 30
    assert GSA_RE.match(long_a) and GSA_RE.match(long_b)
    assert default_gsa_name("mlflow", "mlflow") == "mlflow-mlflow-mlflow"


def test_a_service_account_made_by_hand_with_the_default_name_needs_adopt(world):
    """An account that exists under the default name and is not in the record is someone
    else's: binding our Kubernetes ServiceAccount to it needs --adopt; then purge keeps it."""
    email = f"mlflow-gke-mlflow@{PROJECT}.iam.gserviceaccount.com"
    world.context(local=True).iam.create_service_account(PROJECT, "mlflow-gke-mlflow", "hand")
    mutations = len(world.mutating())
    refused = run(world, *FIRST)
    assert refused.exit_code == 2, refused.output
    assert f"google service account {email} already exist(s) and are not in the install " \
        "record of gke/mlflow" in refused.output
    assert len(world.mutating()) == mutations
    assert wi_members(world, email) == []
    adopted = run(world, *FIRST, "--adopt")
    assert adopted.exit_code == 0, adopted.output
    assert {"kind": "google service account", "name": email, "origin": "adopted"}.items() <= \
        next(r for r in record_of(world)["resources"]
             if r["kind"] == "google service account").items()
    purged = run(world, "uninstall", "-n", "gke", "--purge", "--yes")
    assert purged.exit_code == 0, purged.output
    assert email in world.google.state.accounts and wi_members(world, email) == []


def test_a_release_recorded_with_another_default_account_keeps_it(world):
    """A record whose settings name no --gsa but whose resources hold the account the release
    runs as (an install made when the default was the release's full name) keeps that
    account on a re-run: nothing to do, no new account."""
    first = run(world, *FIRST, "--gsa", "mlflow")
    assert first.exit_code == 0, first.output
    key = ("secrets", "gke", "mlflow-helm.install.v1.mlflow")
    stored = world.kube.objects[key]
    record = json.loads(base64.b64decode(stored["data"]["record.json"]))
    record["settings"]["gsa"] = ""
    stored["data"]["record.json"] = base64.b64encode(json.dumps(record).encode()).decode()
    accounts = set(world.google.state.accounts)
    again = run(world, "install", "-n", "gke", "--skip-tests")
    assert again.exit_code == 0, again.output
    assert "nothing to do" in again.output
    assert set(world.google.state.accounts) == accounts


def test_plan_shows_the_recorded_settings_as_flags(world):
    """`plan` (the refusal's hint points to it) prints what a bare re-run applies, as the
    flags to write down for CI; the defaults are left out."""
    first = run(world, *FIRST)
    assert first.exit_code == 0, first.output
    plan = run(world, "plan", "-n", "gke")
    assert plan.exit_code == 0, plan.output
    # The record keeps what the run resolved too (project and cluster from the context, the
    # derived database names), so a re-run from another context still targets this release.
    flags = ["--project my-proj", "--cluster prod", "--location europe-west1",
             "--database cloudsql", "--cloudsql-instance pg",
             "--database-name mlflow_gke_mlflow", "--db-user mlflow_gke_mlflow",
             "--bucket gs://acme-mlflow-artifacts", "--create-bucket"]
    assert f"  settings (install record): {' '.join(flags)}\n" in plan.output
    as_json = run(world, "plan", "-n", "gke", "-o", "json")
    assert json.loads(as_json.stdout)["recordedSettings"] == flags
    assert "settings (install record)" not in run(world, "install", "-n", "gke").output
