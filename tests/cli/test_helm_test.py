"""`helm test --logs` on Helm 3 and Helm 4: the stand-in runs test hooks as each major does,
and the CLI passes only when the chart's test pod printed its checks.

Helm 3.17.3 (pkg/action/hooks.go execHook, cmd/helm/release_testing.go) deletes a test pod by
its `hook-succeeded`/`hook-failed` policy inside the run, before `--logs` reads it; Helm 4.1.4
(pkg/action/hooks.go execHookWithDelayedShutdown, pkg/cmd/release_testing.go) reads the logs
first and deletes after. The chart's test pod says `before-hook-creation` only, so both work.
"""

from __future__ import annotations

import json
import subprocess

import pytest
from click.testing import CliRunner

from mlflow_helm.cli import main
from mlflow_helm.commands import do_install
from mlflow_helm.errors import HelmFailed
from tests.cli.conftest import cli_env
from tests.cli.test_plugin import helm_home, install_plugin
from tests.fakes.helm_recorder import pods_file

BOTH = pytest.mark.parametrize("world", ["3", "4"], indirect=True, ids=["helm3", "helm4"])

POD = """apiVersion: v1
kind: Pod
metadata:
  name: {{{{ .Release.Name }}}}-test
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: {policy}
spec:
  restartPolicy: Never
  containers:
    - name: t
      image: busybox
"""


def tiny_chart(tmp_path, policy: str):
    chart = tmp_path / f"tiny-{policy.replace(',', '-')}"
    (chart / "templates" / "tests").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n")
    (chart / "templates" / "tests" / "pod.yaml").write_text(POD.format(policy=policy))
    return chart


def stand_in(world, *argv, **env):
    return subprocess.run([str(world.helm_bin), *argv], env=cli_env(world, **env),
                          capture_output=True, text=True, timeout=120)


def pods(world) -> dict:
    return json.loads(pods_file(world.state).read_text())


def install(world, chart):
    """`helm upgrade --install` of a chart as the CLI calls it, through the stand-in."""
    return stand_in(world, "upgrade", "t", str(chart), "--install", "--namespace", "ns",
                    "--output", "json", "--values", "-")


@BOTH
def test_hook_succeeded_pod_is_gone_before_helm3_reads_its_logs(world, tmp_path):
    chart = tiny_chart(tmp_path, "hook-succeeded")
    up = install(world, chart)
    assert up.returncode == 0, up.stderr
    test = stand_in(world, "test", "t", "--namespace", "ns", "--logs")
    assert "TEST SUITE:     t-test" in test.stdout and "Phase:          Succeeded" in test.stdout
    if world.helm_major == "3":
        assert test.returncode == 1
        assert test.stderr == 'Error: unable to get pod logs for t-test: pods "t-test" not found\n'
        assert "POD LOGS" not in test.stdout
    else:
        assert test.returncode == 0, test.stderr
        assert "POD LOGS: t-test\nMLflow helm test against" in test.stdout
    # Either way the pod is gone afterwards, so the next run starts clean.
    assert pods(world) == {}
    assert stand_in(world, "test", "t", "--namespace", "ns").returncode == 0


@BOTH
def test_hook_failed_pod_is_gone_before_helm3_reads_its_logs(world, tmp_path):
    chart = tiny_chart(tmp_path, "hook-failed")
    assert install(world, chart).returncode == 0
    test = stand_in(world, "test", "t", "--namespace", "ns", "--logs", HELM_TEST_RESULT="fail")
    assert test.returncode == 1
    gone = 'unable to get pod logs for t-test: pods "t-test" not found'
    if world.helm_major == "3":
        assert test.stderr == f"Error: {gone}\n"  # the logs error replaces the run's
    else:
        assert "POD LOGS: t-test" in test.stdout and "FAIL  artifact upload" in test.stdout
        assert test.stderr == ("Error: resource Pod/ns/t-test not ready. status: Failed, "
                               "message: pod t-test failed\n")


@BOTH
def test_hook_succeeded_alone_leaves_a_failed_pod_in_the_way(world, tmp_path):
    """No before-hook-creation: a failed pod stays, and the next run cannot create it."""
    chart = tiny_chart(tmp_path, "hook-succeeded")
    assert install(world, chart).returncode == 0
    assert stand_in(world, "test", "t", "--namespace", "ns", HELM_TEST_RESULT="fail").returncode
    again = stand_in(world, "test", "t", "--namespace", "ns")
    assert again.returncode == 1 and 'pods "t-test" already exists' in again.stderr


@BOTH
def test_install_and_test_pass_and_the_test_pod_is_kept(world):
    result = do_install(world.context(local=True))
    assert result.tests["passed"] and result.tests["pods"] == ["mlflow-test"]
    assert {c["check"] for c in result.tests["checks"]} >= {"health", "log param and metric"}
    # The chart's pod is kept (before-hook-creation) and replaced by the next run.
    assert list(pods(world)) == ["mlflow/mlflow-test"]
    state = json.loads(world.state.read_text())
    assert state["mlflow/mlflow"]["test_hooks"][0]["delete_policies"] == ["before-hook-creation"]
    for _ in range(2):
        again = CliRunner().invoke(main, ["test"], env=cli_env(world))
        assert again.exit_code == 0, again.output
        assert "ok   create experiment" in again.output and "  passed" in again.output
    assert all("--logs" in c["argv"] for c in world.helm_calls("test"))


@BOTH
def test_a_test_pod_without_check_lines_fails(world, monkeypatch):
    monkeypatch.setenv("HELM_TEST_RESULT", "silent")
    with pytest.raises(HelmFailed) as err:
        do_install(world.context(local=True))
    assert err.value.message.startswith("helm test failed (the test pod printed no check line)")
    out = CliRunner().invoke(main, ["test"], env=cli_env(world, HELM_TEST_RESULT="silent"))
    assert out.exit_code == 5
    assert "passed" not in out.output
    assert "has no `ok`/`FAIL` line" in out.output
    assert "`kubectl -n mlflow logs mlflow-test`" in out.output


@BOTH
def test_a_release_without_test_pods_fails_with_the_way_out(world):
    with pytest.raises(HelmFailed) as err:
        do_install(world.context(local=True, set_values=["tests.enabled=false"]))
    assert "TEST SUITE: None" in err.value.message
    assert "--skip-tests" in err.value.hint


@BOTH
def test_failed_check_hint_names_the_kept_pod(world):
    do_install(world.context(local=True, skip_tests=True))
    bad = CliRunner().invoke(main, ["test"], env=cli_env(world, HELM_TEST_RESULT="fail"))
    assert bad.exit_code == 5
    assert "helm test failed (artifact upload, download, delete)" in bad.output
    assert "POD LOGS: mlflow-test" in bad.output
    assert "the test pod's log is above" in bad.output
    assert "`kubectl -n mlflow logs mlflow-test` shows it again" in bad.output


@BOTH
def test_a_release_whose_test_pod_says_hook_succeeded(world):
    """A release installed by a chart whose test pod says hook-succeeded (this chart's did
    before it kept the pod): Helm 3 cannot show the log and the hint says why; Helm 4 can."""
    do_install(world.context(local=True, skip_tests=True))
    state = json.loads(world.state.read_text())
    state["mlflow/mlflow"]["test_hooks"][0]["delete_policies"] = [
        "before-hook-creation", "hook-succeeded"]
    world.state.write_text(json.dumps(state))
    out = CliRunner().invoke(main, ["test"], env=cli_env(world))
    if world.helm_major == "3":
        assert out.exit_code == 5
        assert "Helm could not read the log of test pod mlflow-test" in out.output
        assert "passed" not in out.output
    else:
        assert out.exit_code == 0, out.output
        assert "ok   create experiment" in out.output


@BOTH
def test_plugin_install_runs_the_tests_and_fails_without_check_lines(world, tmp_path):
    """`helm mlflow-gcp install` through the plugin installed into the real Helm; the Helm
    the plugin calls back (HELM_BIN) is the stand-in, which the real Helm runs under."""
    env = helm_home(tmp_path, world)
    real = env["REAL_HELM"]
    assert install_plugin(real, env).returncode == 0
    args = [str(world.helm_bin), "mlflow-gcp", "install", "--local"]
    ok = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Tests:" in ok.stdout and "  passed" in ok.stdout
    assert world.helm_calls("test")  # the plugin reached the stand-in, not a cluster
    silent = subprocess.run(args, env={**env, "HELM_TEST_RESULT": "silent"},
                            capture_output=True, text=True, timeout=300)
    assert silent.returncode == 5, silent.stdout + silent.stderr
    assert "the test pod printed no check line" in silent.stdout + silent.stderr
    assert "passed" not in silent.stdout
