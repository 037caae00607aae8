"""The install benchmark's arithmetic (bench/callgraph.py) on calls with known timings, and
a short run of bench/install.py that must print its figures and find a re-run that changes
nothing and reads each resource once. No assertion on speed: that is the benchmark's job."""

from __future__ import annotations

import re
import subprocess
import sys

from bench.callgraph import analyse
from tests.conftest import REPO_ROOT
from tests.fakes.google import Call

SA = "sa/mlflow@p.iam.gserviceaccount.com"


def call(op, start, end, key, *, mutating=False, status=200, **kw) -> Call:
    return Call("x", op, "GET", "/", status, mutating, start, end, key, **kw)


def test_critical_path_follows_the_instance_queue_and_skips_wasted_calls():
    calls = [
        call("instances.get", 0.0, 0.1, "sql/p/i"),
        call("databases.get", 0.12, 0.22, "sql/p/i/databases/db", status=404),
        call("serviceAccounts.get", 0.12, 0.22, SA, status=404),
        call("databases.insert", 0.3, 0.4, "sql/p/i/databases/db", mutating=True,
             operation="op-1", instance="sql/p/i"),
        call("serviceAccounts.create", 0.3, 0.4, SA, mutating=True),
        call("projects.setIamPolicy", 0.5, 0.6, "project/p/policy", mutating=True,
             status=400, refs=(SA,)),
        call("operations.get", 1.0, 1.1, "sqlop/op-1", operation="op-1"),
        call("projects.setIamPolicy", 1.5, 1.6, "project/p/policy", mutating=True,
             refs=(SA,)),
        call("operations.get", 2.5, 2.6, "sqlop/op-1", operation="op-1", done=True),
        call("users.insert", 2.7, 2.8, "sql/p/i/users/u", mutating=True, operation="op-2",
             instance="sql/p/i"),
        call("operations.get", 4.9, 5.0, "sqlop/op-2", operation="op-2", done=True),
    ]
    a = analyse(calls, op_seconds=2.0, sa_delay=1.0)
    assert [n.call.op for n in a.chain] == ["instances.get", "databases.get",
                                            "databases.insert", "operations.get",
                                            "users.insert", "operations.get"]
    # 0.1 + 0.1 + 0.1, the operation's 2 s, the user's 0.1 and its 2 s.
    assert round(a.critical, 3) == 4.4
    assert round(a.wall, 3) == 5.0 and round(a.ratio, 3) == round(5.0 / 4.4, 3)
    assert a.wasted == 2  # the poll that saw the operation running, the refused binding
    assert (a.reads, a.mutating) == (6, 5)
    # The binding that went through waited for the account (created by 0.3, visible 1 s
    # later), not for the refused attempt.
    binding = next(n for n in a.nodes if n.call.op == "projects.setIamPolicy")
    assert binding.call.status == 200 and round(binding.finish, 3) == 1.3


def test_a_new_service_account_delays_what_binds_it():
    calls = [
        call("serviceAccounts.get", 0.0, 0.1, SA, status=404),
        call("serviceAccounts.create", 0.2, 0.3, SA, mutating=True),
        call("projects.getIamPolicy", 0.4, 0.5, "project/p/policy"),
        call("projects.setIamPolicy", 1.4, 1.5, "project/p/policy", mutating=True,
             refs=(SA,)),
    ]
    a = analyse(calls, op_seconds=2.0, sa_delay=1.0)
    # get 0.1, create 0.1, then the binding lands once the account is visible (1 s later).
    assert [n.call.op for n in a.chain] == ["serviceAccounts.get", "serviceAccounts.create",
                                            "projects.setIamPolicy"]
    assert round(a.critical, 3) == 1.2
    assert a.reads_per_resource == 1.0


def test_bench_install_prints_its_figures_and_a_rerun_changes_nothing():
    proc = subprocess.run(
        [sys.executable, "bench/install.py", "--latency", "0.01", "--op-seconds", "0.3",
         "--sa-delay", "0.1"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = dict(re.findall(r"^([a-z0-9_]+): (.*)$", proc.stdout, re.M))
    assert float(lines["first_run_wall_over_critical_path"]) >= 1.0
    assert lines["first_run_changes"] == "10"
    assert lines["rerun_changes"] == "0"
    assert lines["rerun_mutating_calls"] == "0"
    # The run's lock is excluded from those figures explicitly: take it, give it back.
    assert lines["rerun_lock_calls"].startswith("2 (POST 201, DELETE 200;")
    assert lines["rerun_reads_per_resource"] == "1.00", lines["rerun_most_read_resource"]
    assert "databases.insert" in lines["first_run_critical_path"]
