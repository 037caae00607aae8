"""`make demo` (tests/fakes/demo.py): the CLI's main job against the fakes, with pytest
unimportable, and nothing left running afterwards, also after Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO_ROOT, helm_binary

# The demo process cannot import pytest; the CLI and the Helm stand-in it starts are
# separate processes that never import it either.
NO_PYTEST = ("import runpy, sys; sys.modules['pytest'] = None; sys.argv[0] = 'demo'; "
             "runpy.run_module('tests.fakes.demo', run_name='__main__', alter_sys=True)")


def demo_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env.update(HELM4_BIN=helm_binary("4"), PYTHONPATH=str(REPO_ROOT))
    return env


def gone(pid: int) -> bool:
    """No such process, or only its zombie (Linux /proc/PID/stat state Z)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_demo_runs_the_main_job_without_pytest(tmp_path):
    done = subprocess.run([sys.executable, "-c", NO_PYTEST, str(tmp_path)], cwd=REPO_ROOT,
                          env=demo_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "+ create    cloud sql database           mlflow_mlflow_mlflow" in out
    assert "  passed\n" in out  # helm test, first install
    assert "10 unchanged: nothing to do." in out  # the re-run without flags
    assert "  present  helm release                 mlflow/mlflow  (revision 1)" in out
    assert "Deleted: 10." in out
    assert "nothing is left running" in out
    assert gone(int((tmp_path / "fake-gcs.pid").read_text()))


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_demo_stops_everything_when_interrupted(tmp_path, how):
    proc = subprocess.Popen([sys.executable, "-c", NO_PYTEST, str(tmp_path)], cwd=REPO_ROOT,
                            env=demo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        for line in proc.stdout:  # wait until the first install is under way
            if line.startswith("$ mlflow-helm install"):
                break
        time.sleep(1.0)
        if how == "ctrl-c":  # a terminal's Ctrl-C reaches the whole foreground group
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "demo: interrupted; every fake is stopped" in err
    assert gone(int((tmp_path / "fake-gcs.pid").read_text()))
