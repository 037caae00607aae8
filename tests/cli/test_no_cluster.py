"""What a new user sees without a cluster or without Helm: each error names the cause and the
fix, and exits 2 before anything is changed (issue 13, item 2). Run as a real subprocess, as
the user runs it; the kubeconfig cases follow kubernetes' loader (kube_config.py:
KubeConfigMerger, "Invalid kube-config file. Expected key current-context") and the API
server that does not answer is a loopback port nothing listens on."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import yaml

from tests.conftest import helm_binary


def run(tmp_path, *args: str, kubeconfig: str | None = None, helm: str | None = None,
        path: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HELM_") and k not in ("KUBECONFIG",)}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config of the machine's
    if kubeconfig is not None:
        env["KUBECONFIG"] = kubeconfig
    env["HELM_BIN"] = helm or helm_binary("4")
    if path is not None:
        env["PATH"] = path
        env.pop("HELM_BIN")
    return subprocess.run([sys.executable, "-m", "mlflow_helm", "install", "--local", *args],
                          env=env, capture_output=True, text=True, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_no_kubeconfig_says_how_to_get_a_cluster(tmp_path):
    out = run(tmp_path, kubeconfig=str(tmp_path / "none" / "config"))
    assert out.returncode == 2, out.stderr
    assert f"no kubeconfig: {tmp_path / 'none' / 'config'} does not exist" in out.stderr
    assert "kind create cluster" in out.stderr and "minikube start" in out.stderr
    assert "Traceback" not in out.stderr


def test_no_kubeconfig_anywhere_names_the_default_file(tmp_path):
    out = run(tmp_path)
    assert out.returncode == 2, out.stderr
    assert f"no kubeconfig: {tmp_path}/.kube/config does not exist" in out.stderr


def test_empty_kubeconfig_after_the_cluster_was_deleted(tmp_path):
    # What `kind delete cluster` leaves: a file without contexts or current-context.
    empty = tmp_path / "config"
    empty.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [],
                                     "contexts": [], "users": [], "current-context": ""}))
    out = run(tmp_path, kubeconfig=str(empty))
    assert out.returncode == 2, out.stderr
    assert f"no current context in the kubeconfig ({empty})" in out.stderr
    assert "kubectl config use-context" in out.stderr


def test_a_context_that_is_not_there(tmp_path):
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "clusters": [],
                                      "contexts": [], "users": [], "current-context": ""}))
    out = run(tmp_path, "--kube-context", "kind-gone", kubeconfig=str(config))
    assert out.returncode == 2, out.stderr
    assert "context kind-gone is not in the kubeconfig" in out.stderr


def test_a_cluster_that_does_not_answer(tmp_path):
    port = free_port()  # nothing listens: a stopped kind cluster's port
    config = tmp_path / "config"
    config.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "kind-kind",
        "clusters": [{"name": "kind", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
        "users": [{"name": "kind", "user": {"token": "t"}}],
        "contexts": [{"name": "kind-kind", "context": {"cluster": "kind", "user": "kind"}}]}))
    out = run(tmp_path, kubeconfig=str(config))
    assert out.returncode == 2, out.stderr
    assert f"cannot reach the Kubernetes API at https://127.0.0.1:{port} (Connection refused)" \
        in out.stderr
    assert "is the cluster running?" in out.stderr
    assert "Max retries exceeded" not in out.stderr


def test_no_helm_on_path_comes_first(tmp_path):
    # PATH without Helm, no HELM_BIN: said before any cluster is tried.
    out = run(tmp_path, kubeconfig=str(tmp_path / "none"), path=os.path.dirname(sys.executable)
              + os.pathsep + "/usr/bin:/bin")
    assert out.returncode == 2, out.stderr
    assert "Helm not found: 'helm' is not on PATH" in out.stderr
    assert "3.17 or later, or 4" in out.stderr and "exit status 127" not in out.stderr


def test_helm_bin_that_does_not_exist(tmp_path):
    out = run(tmp_path, kubeconfig=str(tmp_path / "none"), helm=str(tmp_path / "helm"))
    assert out.returncode == 2, out.stderr
    assert f"Helm not found: '{tmp_path / 'helm'}' is not an executable file" in out.stderr
