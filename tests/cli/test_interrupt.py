"""SIGINT and SIGTERM, sent for real to a real `mlflow-helm install` subprocess, at the points
where an install waits: a Cloud SQL operation, the one-time grant (temporary user, Secret
and Job), `helm upgrade` (Helm child). See src/mlflow_helm/interrupt.py.

Each test waits until the run is parked at that point (the fakes have seen the call and no
other change arrives for a moment), sends the signal, and checks: the exit code is 128 + the
signal; the run ends within seconds (a generous bound that shows the wait was cancelled, not
a benchmark); no mutating request reached the fakes after the signal but cleanup (the Lease,
the install record's `lastRun`, the temporary user's deletion); the child processes are gone;
the Lease is released; and a re-run converges to what an uninterrupted install leaves.

The fakes and the CLI share the system's monotonic clock (CLOCK_MONOTONIC on Linux:
https://docs.python.org/3/library/time.html#time.monotonic), so a call's arrival time in the
fakes' logs is compared with the moment the signal was sent.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

from mlflow_helm.commands import do_install
from mlflow_helm.dbgrant import GRANT_USER
from mlflow_helm.record import record_name
from tests.cli.conftest import PROJECT, cli_env
from tests.cli.test_install import DB
from tests.cli.test_resilience import clean_full_state, end_state
from tests.fakes.kube import is_lock

LEASE = "mlflow-helm.lock.mlflow"
RECORD = record_name("mlflow")
FULL_FLAGS = ["--database", "cloudsql", "--cloudsql-instance", "pg", "--bucket",
              "gs://team-artifacts", "--create-bucket", "--skip-tests"]
BOUND = 5.0  # seconds from the signal to the exit: generous; a Cloud SQL wait is 30 s here


def start(world, args: list[str], **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "mlflow_helm", "install", *args],
                            env=cli_env(world, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def cli(world, args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlflow_helm", "install", *args],
                          env=cli_env(world, **env), capture_output=True, text=True,
                          timeout=120)


def changes(world) -> list:
    """Every mutating call that reached a fake, the lock's included."""
    return [c for c in world.google.calls + world.gcs.calls + world.kube.calls if c.mutating]


def wait_parked(world, proc, ready, quiet: float = 0.4, timeout: float = 60) -> None:
    """Until `ready()` and no change has arrived for `quiet` seconds (the lock's renewals
    aside): the run is waiting where the test wants it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        last = max((c.start for c in changes(world) if not is_lock(c)), default=0.0)
        if ready() and time.monotonic() - last > quiet:
            return
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"never parked: {proc.communicate()}")


def interrupt(proc, sig: int) -> tuple[float, float, str]:
    """Send `sig`; (when, seconds to exit, stderr)."""
    sent = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return sent, time.monotonic() - sent, err


def after(world, sent: float) -> list[tuple[str, str]]:
    """The mutating calls that arrived after the signal, the lock's aside: (op, key)."""
    return [(c.op, c.key or c.path) for c in changes(world)
            if c.start >= sent and not is_lock(c) and c.status < 400]


def gone(pid: int, within: float = 3.0) -> bool:
    """The process is gone and reaped (a zombie still answers kill 0)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def assert_released(world, ns: str = "mlflow") -> None:
    assert world.kube.lease(ns, LEASE) is None
    assert [c.method for c in world.kube.lock_calls()][-1] == "DELETE"


def last_run(world) -> dict:
    import base64

    secret = world.kube.secret("mlflow", RECORD)
    return json.loads(base64.b64decode(secret["data"]["record.json"])).get("lastRun", {})


def test_sigint_during_a_cloud_sql_operation_wait_stops_at_once_and_rerun_resumes(world):
    world.google.op_seconds = 30  # databases.insert: would keep the run waiting 30 s
    proc = start(world, FULL_FLAGS)
    wait_parked(world, proc, lambda: any(
        c.op == "databases.insert" and c.status == 200 for c in world.google.calls))
    sent, took, err = interrupt(proc, signal.SIGINT)

    assert proc.returncode == 130, err
    assert took < BOUND, (took, err)
    # Only the install record's lastRun was written after the signal; no user insert, no
    # Helm (the database's operation, started before, finishes on the instance).
    assert after(world, sent) == [("secrets.put", f"ns/mlflow/secrets/{RECORD}")], err
    assert [c for c in world.helm_calls() if c["t"] >= sent] == []
    assert_released(world)
    assert "SIGINT received: stopping" in err
    assert "Interrupted by SIGINT: stopped before the next change and cleaned up" in err
    assert "Applied before the signal:" in err and "google service account" in err
    assert "Stopped half way" in err and f"cloud sql database           {DB}" in err
    assert "Not started:" in err and "helm release" in err
    assert "To resume, re-run `mlflow-helm install mlflow -n mlflow --skip-tests`" in err
    record = last_run(world)
    assert record["result"] == "interrupted" and record["signal"] == "SIGINT"
    assert "database" in record["stopped"] and "release" in record["notStarted"]

    # The re-run the message names: no flag but the release and namespace.
    world.google.op_seconds = 0.03  # the operation left running is DONE now
    resumed = cli(world, ["mlflow", "-n", "mlflow", "--skip-tests"])
    assert resumed.returncode == 0, resumed.stderr
    again = cli(world, ["mlflow", "-n", "mlflow", "--skip-tests"])
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    assert end_state(world) == clean_full_state(world)
    assert last_run(world) == {}


def test_sigterm_during_the_grant_job_removes_the_job_secret_and_temporary_user(world):
    """The grant Job is running (its pod never finishes here); SIGTERM, then a second
    signal while the temporary user's deletion is still waiting for Cloud SQL."""
    finish = threading.Event()
    world.kube.job_runner = lambda job, fake: (finish.wait(60), (True, ""))[1]
    flags = ["--database", "cloudsql", "--cloudsql-instance", "pg", "--db-auth", "iam",
             "--skip-tests"]
    proc = start(world, flags)
    wait_parked(world, proc, lambda: bool(world.kube.jobs))
    users = world.google.state.users[(PROJECT, "pg")]
    assert (GRANT_USER, "") in users
    assert world.kube.secret("mlflow", "mlflow-db-grant") is not None
    world.google.op_seconds = 1.0  # the deletion takes a second: time for a second signal
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    took = time.monotonic() - sent
    finish.set()

    assert proc.returncode == 143, err
    assert took < BOUND, (took, err)
    assert "SIGINT received again: still cleaning up" in err
    assert (GRANT_USER, "") not in users  # the cloudsqlsuperuser member is gone
    assert world.kube.jobs == {} and world.kube.pods == {}
    assert world.kube.secret("mlflow", "mlflow-db-grant") is None
    # (after() lists the Google fake's calls before the Kubernetes fake's)
    assert after(world, sent) == [
        ("users.delete", f"sql/{PROJECT}/pg/users/{GRANT_USER}"),
        ("jobs.delete", "ns/mlflow/jobs/mlflow-db-grant"),
        ("secrets.delete", "ns/mlflow/secrets/mlflow-db-grant"),
        ("secrets.put", f"ns/mlflow/secrets/{RECORD}")], err
    # The Job (and so its pod) goes first, then its password, then the user it logs in as.
    starts = {c.op: c.start for c in world.google.calls + world.kube.calls
              if c.start >= sent and c.op in ("jobs.delete", "secrets.delete", "users.delete")}
    assert starts["jobs.delete"] < starts["secrets.delete"] < starts["users.delete"]
    assert_released(world)
    assert "Stopped half way" in err and "database owner" in err
    assert world.kube.objects.get(("configmaps", "mlflow", "mlflow-db-grant")) is None

    # Re-run: the grant Job runs once more, to completion; the temporary user is gone.
    world.google.op_seconds = 0.03

    def rerun():
        return do_install(world.context(database="cloudsql", cloudsql_instance="pg",
                                        db_auth="iam", skip_tests=True))

    rerun()
    assert len([j for j in world.kube.jobs_created]) == 2
    assert {c.action for c in rerun().changes} == {"unchanged"}
    assert len(world.kube.jobs_created) == 2
    assert (GRANT_USER, "") not in users
    assert world.kube.objects.get(("configmaps", "mlflow", "mlflow-db-grant")) is not None


def test_sigint_during_helm_upgrade_cancels_helm_and_rerun_installs(world):
    proc = start(world, ["--local", "--skip-tests"], HELM_UPGRADE_SECONDS="30")
    wait_parked(world, proc, lambda: bool(world.helm_calls("upgrade")))
    helm_pid = world.helm_calls("upgrade")[0]["pid"]
    sent, took, err = interrupt(proc, signal.SIGINT)

    assert proc.returncode == 130, err
    assert took < BOUND, (took, err)
    assert gone(helm_pid), "helm survived"
    assert after(world, sent) == [("secrets.put", f"ns/mlflow/secrets/{RECORD}")], err
    assert [c for c in world.helm_calls() if c["t"] >= sent] == []
    assert not world.state.exists() or json.loads(world.state.read_text()) == {}
    assert_released(world)
    assert "Stopped half way" in err and "helm release" in err

    resumed = cli(world, ["mlflow", "-n", "mlflow", "--skip-tests"])
    assert resumed.returncode == 0, resumed.stderr
    again = cli(world, ["mlflow", "-n", "mlflow", "--skip-tests"])
    assert "nothing to do" in again.stdout, again.stdout
    state = json.loads(world.state.read_text())
    assert state["mlflow/mlflow"]["revision"] == 1
    assert len(world.helm_calls("upgrade")) == 2  # the cancelled one and the resumed one


def test_done_in_counts_on_the_progress_lines_clock(world):
    """Not about signals, but about what the same real subprocess prints: "Done in" is the
    time since the first progress line's zero, never less than the last "[ n.s]" above it
    (it used to start later, after credentials and preflight)."""
    import re

    done = cli(world, ["--local", "--skip-tests"])
    assert done.returncode == 0, done.stderr
    stamps = [float(s) for s in re.findall(r"^\[\s*([\d.]+)s\]", done.stderr, re.M)]
    total = float(re.search(r"^Done in ([\d.]+)s\.$", done.stdout, re.M).group(1))
    assert stamps and total >= max(stamps), (stamps, total)
