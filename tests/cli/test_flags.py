"""The click layer: flag mapping, environment precedence, and bad flags rejected before
any API call (the fakes see no request at all)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from mlflow_helm.cli import main
from tests.cli.conftest import cli_env

BAD = [
    (["install", "Bad_Release"], "RELEASE 'Bad_Release'"),
    (["install", "-n", "Team_A"], "--namespace 'Team_A'"),
    (["install", "--project", "X"], "--project 'X'"),
    (["install", "--bucket", "my-bucket"], "must look like gs://NAME"),
    (["install", "--bucket", "gs://UPPER"], "'UPPER' is not a valid bucket name"),
    (["install", "--bucket", "gs://googlebucket"], "not a valid bucket name"),
    (["install", "--create-bucket"], "--create-bucket needs --bucket"),
    (["install", "--database", "cloudsql"], "--database cloudsql needs --cloudsql-instance"),
    (["install", "--database", "cloudsql", "--cloudsql-instance", "p:r"],
     "must be NAME or PROJECT:REGION:NAME"),
    (["install", "--database", "cloudsql", "--cloudsql-instance", "Bad_Name"],
     "not a Cloud SQL instance name"),
    (["install", "--database", "cloudsql", "--cloudsql-instance", "my-proj:nowhere:pg"],
     "'nowhere' is not a region"),
    (["install", "--cloudsql-instance", "pg"], "--cloudsql-instance needs --database cloudsql"),
    (["install", "--db-auth", "iam"], "--db-auth iam needs --database cloudsql"),
    (["install", "--database", "external"], "--database external needs --external-uri"),
    (["install", "--local", "--bucket", "gs://abc"], "--local cannot be combined with --bucket"),
    (["install", "--gsa", "ab"], "--gsa 'ab'"),
    (["install", "--identity", "direct", "--gsa", "mlflow-sa"],
     "--gsa cannot be combined with --identity direct"),
    (["install", "--region", "mars"], "--region 'mars'"),
    (["install", "--database", "oracle"], "Invalid value for '--database'"),
    (["install", "--database-name", "1db"], "--database-name '1db'"),
    (["install", "--db-user", "Robert'); DROP"], "--db-user"),
    (["install", "a" * 54], "not a Helm release name"),
    # Each of these was reported by `helm upgrade` only after the cloud resources existed.
    (["install", "--set", "server.replicas"], "--set 'server.replicas': 'server.replicas' is "
     "not KEY=VALUE"),
    (["install", "--set", "a=1,,b=2"], "is not KEY=VALUE"),
    (["install", "--timeout", "10"], "--timeout '10': not a duration with a unit"),
    (["install", "--timeout", "10 minutes"], "--timeout '10 minutes'"),
    (["install", "--chart", "./nochart"], "--chart './nochart': no chart there"),
    (["install", "--version", "0.2.0"], "--version '0.2.0' needs --chart"),
    (["install", "--database", "external", "--external-uri", "notauri"],
     "--external-uri is not a URL (value not shown)"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a)[:40] for a, _ in BAD])
def test_bad_flag_is_rejected_before_any_api_call(world, args, message):
    result = CliRunner().invoke(main, args, env=cli_env(world))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert world.google.calls == [] and world.gcs.calls == [] and world.kube.calls == []
    assert world.helm_calls() == []


def test_namespace_and_context_follow_helm_environment(world):
    env = cli_env(world, HELM_NAMESPACE="team-a", HELM_KUBECONTEXT="")
    result = CliRunner().invoke(main, ["plan", "--local", "-o", "json"], env=env)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["namespace"] == "team-a"
    assert {c["name"] for c in doc["changes"] if c["kind"] == "namespace"} == {"team-a"}


def test_flag_beats_environment(world):
    env = cli_env(world, HELM_NAMESPACE="team-a")
    result = CliRunner().invoke(main, ["plan", "--local", "-n", "team-b", "-o", "json"],
                                env=env)
    assert json.loads(result.output)["namespace"] == "team-b"


def test_project_from_cloudsdk_environment(world):
    env = cli_env(world, CLOUDSDK_CORE_PROJECT="other-proj")
    result = CliRunner().invoke(main, ["plan", "--bucket", "gs://team-artifacts",
                                       "--create-bucket"], env=env)
    # The fake knows no project other-proj: the project came from the environment.
    assert "project other-proj does not exist, or you cannot see it" in result.output
    assert result.exit_code == 2


def test_project_and_cluster_inferred_from_gke_context(world):
    result = CliRunner().invoke(main, ["plan", "--bucket", "gs://team-artifacts",
                                       "--create-bucket", "-o", "json"], env=cli_env(world))
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["project"] == "my-proj"
    assert any(c["kind"] == "gcs bucket" and c["action"] == "create" for c in doc["changes"])


def test_json_output_reports_errors_as_a_document(world):
    result = CliRunner().invoke(
        main, ["plan", "--database", "cloudsql", "--cloudsql-instance", "missing", "-o",
               "json"], env=cli_env(world))
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["error"]["type"] == "UserError" and doc["error"]["exitCode"] == 2
    assert "Cloud SQL instance missing not found" in doc["error"]["message"]


def test_user_error_has_no_traceback_unless_debug(world):
    args = ["plan", "--database", "cloudsql", "--cloudsql-instance", "missing"]
    plain = CliRunner().invoke(main, args, env=cli_env(world))
    assert "Error: Cloud SQL instance missing not found in project my-proj" in plain.output
    assert "hint: check --cloudsql-instance" in plain.output
    assert "Traceback" not in plain.output
    debug = CliRunner().invoke(main, [*args, "--debug"], env=cli_env(world))
    assert "Traceback" in debug.output


def test_workload_identity_off_is_reported_with_the_fix(world):
    world.google.add_cluster("my-proj", "europe-west1", "prod", pool=False)
    result = CliRunner().invoke(main, ["plan", "--bucket", "gs://team-artifacts",
                                       "--create-bucket"], env=cli_env(world))
    assert "does not have Workload Identity enabled" in result.output
    assert "--workload-pool=my-proj.svc.id.goog" in result.output
    assert world.mutating() == []


def test_old_kubernetes_is_refused(world):
    world.kube.version = ("1", "28")
    result = CliRunner().invoke(main, ["plan", "--local"], env=cli_env(world))
    assert "Kubernetes v1.28.2-gke.1000 is too old" in result.output
    assert result.exit_code == 2


def test_install_text_output_shows_plan_then_summary(world):
    result = CliRunner().invoke(main, ["install", "--local"], env=cli_env(world))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Plan for release mlflow in namespace mlflow:" in out
    assert "+ create    namespace" in out
    assert "Tests:" in out and "ok   version (3.17.2)" in out
    assert "kubectl -n mlflow port-forward svc/mlflow 5000:5000" in out


def test_help_is_fast_and_imports_no_cloud_library():
    import subprocess
    import sys
    import time

    code = ("import sys, mlflow_helm.cli as c\n"
            "heavy = [m for m in ('googleapiclient', 'kubernetes', 'google.cloud.storage',"
            " 'pyhelm3') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "mlflow_helm", "--help"], check=True,
                         capture_output=True, text=True)
    elapsed = time.monotonic() - start
    assert "install" in out.stdout and elapsed < 2.0  # ≤0.5 s on an idle machine


@pytest.mark.parametrize("extra", [[], ["-o", "json"], ["--debug"]])
def test_the_generated_password_is_never_printed(world, extra):
    import base64

    args = ["install", "--database", "cloudsql", "--cloudsql-instance", "pg", *extra]
    result = CliRunner().invoke(main, args, env=cli_env(world))
    assert result.exit_code == 0, result.output
    secret = world.kube.secret("mlflow", "mlflow-db")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert len(password) >= 32 and password not in result.output
    assert "database password (not shown)" in result.output


def test_helm_kubecontext_selects_the_context_and_its_project(world, tmp_path):
    import yaml

    config = yaml.safe_load(world.kubeconfig.read_text())
    config["contexts"].append({"name": "gke_other-proj_europe-west1_prod",
                               "context": {"cluster": "fake", "user": "fake"}})
    path = tmp_path / "two-contexts"
    path.write_text(yaml.safe_dump(config))
    env = cli_env(world, KUBECONFIG=str(path),
                  HELM_KUBECONTEXT="gke_other-proj_europe-west1_prod", HELM_DEBUG="false")
    result = CliRunner().invoke(main, ["plan", "--bucket", "gs://team-artifacts",
                                       "--create-bucket"], env=env)
    # The project came from the selected context, not the current one (my-proj).
    assert "project other-proj does not exist, or you cannot see it" in result.output
    assert "Traceback" not in result.output  # HELM_DEBUG=false is not --debug


def test_helm_users_reflexes_are_accepted(world):
    """`-o=json` as cobra takes it, and install's --wait and --atomic/--rollback-on-failure,
    which the CLI always does (Helm --wait --wait-for-jobs, and the rollback flag of the
    major in use)."""
    for flag in ("--wait", "--atomic", "--rollback-on-failure"):
        result = CliRunner().invoke(main, ["install", "--local", "--skip-tests", flag,
                                           "-o=json"], env=cli_env(world))
        assert result.exit_code == 0, result.output
        import json

        assert json.loads(result.stdout)["command"] == "install"
    argv = world.helm_calls("upgrade")[-1]["argv"]
    assert "--wait" in argv and "--wait-for-jobs" in argv
    assert "--rollback-on-failure" in argv  # the world's Helm is 4


@pytest.mark.parametrize("env, expected", [
    ({}, "mlflow"),
    # What Helm exports to a plugin when no -n was given (pkg/cli EnvSettings.Namespace:
    # the flag, else the kube context's namespace, else "default"; both majors).
    ({"HELM_NAMESPACE": "default"}, "mlflow"),
    ({"HELM_NAMESPACE": "team-ctx"}, "mlflow"),  # the context's own namespace, see below
    ({"HELM_NAMESPACE": "team-a"}, "team-a"),  # Helm's -n
    ({"MLFLOW_HELM_NAMESPACE": "default", "HELM_NAMESPACE": "default"}, "default"),
])
def test_one_namespace_rule_for_both_entry_points(world, env, expected):
    """Helm's fallback namespace is not a choice: the standalone CLI and the plugin without
    -n both land in `mlflow`, so mixing them never makes a second release."""
    import yaml

    config = yaml.safe_load(world.kubeconfig.read_text())
    for context in config["contexts"]:
        context["context"]["namespace"] = "team-ctx"
    world.kubeconfig.write_text(yaml.safe_dump(config))
    result = CliRunner().invoke(main, ["plan", "--local", "-o", "json"],
                                env=cli_env(world, **env))
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["namespace"] == expected


def test_help_shows_the_namespace_default():
    result = CliRunner().invoke(main, ["install", "--help"])
    assert "[default: mlflow]" in " ".join(result.output.split())
    assert "MLFLOW_HELM_NAMESPACE" in result.output


def test_set_string_json_and_file_reach_helm_and_the_record(world, tmp_path):
    """--set-json, --set-string and --set-file pass through to Helm as given; what Helm
    stores (the recorder reads it back from the real Helm's merge, not from a model) is what
    our own layer predicted, so a re-run without the flags sees nothing to change. Helm's
    order is -f, --set-json, --set, --set-string, --set-file (pkg/cli/values/options.go
    MergeValues, both majors)."""
    note = tmp_path / "note.txt"
    note.write_text("line one,\nline two")
    args = ["install", "--local", "--skip-tests",
            "--set-json", 'server.extraArgs=["--dev"],podLabels={"team":"ml"},server.workers=3',
            "--set", "podAnnotations.build=1",
            "--set-string", "podAnnotations.build=007",
            "--set-file", f"podAnnotations.note={note}", "-o", "json"]
    result = CliRunner().invoke(main, args, env=cli_env(world))
    assert result.exit_code == 0, result.output
    argv = world.helm_calls("upgrade")[-1]["argv"]
    for flag, item in (("--set-json", args[4]), ("--set", "podAnnotations.build=1"),
                       ("--set-string", "podAnnotations.build=007"),
                       ("--set-file", f"podAnnotations.note={note}")):
        assert argv[argv.index(flag) + 1] == item
    stored = json.loads(world.state.read_text())["mlflow/mlflow"]["values"]
    assert stored["server"]["extraArgs"] == ["--dev"]
    assert stored["podLabels"] == {"team": "ml"} and stored["server"]["workers"] == 3
    assert stored["podAnnotations"] == {"build": "007", "note": "line one,\nline two"}
    again = CliRunner().invoke(main, ["install", "--skip-tests", "-o", "json"],
                               env=cli_env(world))
    assert again.exit_code == 0, again.output
    assert {c["action"] for c in json.loads(again.stdout)["changes"]} == {"unchanged"}


@pytest.mark.parametrize("args,message", [
    (["--set-json", "server.extraArgs=[--dev]"], "--set-json 'server.extraArgs=[--dev]': "
     "the value of server.extraArgs is not JSON"),
    (["--set-json", 'a=1 b=2'], "unexpected ' b=2' after the JSON value of a"),
    (["--set-string", "podAnnotations"], "--set-string 'podAnnotations': 'podAnnotations' is "
     "not KEY=VALUE"),
    (["--set-file", "podAnnotations.x=/nonexistent/file"], "--set-file "
     "'podAnnotations.x=/nonexistent/file': cannot read /nonexistent/file"),
])
def test_bad_typed_set_is_rejected_before_any_api_call(world, args, message):
    result = CliRunner().invoke(main, ["install", "--local", *args], env=cli_env(world))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert world.google.calls == [] and world.kube.calls == [] and world.helm_calls() == []
