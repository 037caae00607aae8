"""scripts/quickstart.sh, the README's first command (issue 13, item 1), as a new user runs it:
a fresh HOME, no kubeconfig, and only the tools each case gives it on PATH.

kind and minikube cannot run here (no container engine), so each is a stub on PATH that does
what the real one does to the kubeconfig: `kind create cluster --name NAME` writes a context
named `kind-NAME` and makes it current (kind's pkg/cluster/internal/kubeconfig KINDClusterKey,
"kind-" + name; its quick start prints `Set kubectl context to "kind-NAME"`), `minikube start
-p NAME` one named NAME (minikube's profile is its context). The context points at the fake
Kubernetes API, and `helm` is the recording stand-in over the real Helm, so the install and
helm test behind it are the ones tests/cli/test_install.py checks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import cli_env
from tests.conftest import REPO_ROOT
from tests.fakes.kube import write_kubeconfig

SCRIPT = REPO_ROOT / "scripts" / "quickstart.sh"
# What the script and env.sh call; a new dependency shows up here as "not found".
TOOLS = ("sh", "bash", "dirname", "sed", "tr", "head", "grep", "find", "cp", "mktemp", "rm",
         "mv", "mkdir", "cat", "cut", "env")

STUBS = {
    # kind: `get clusters`, `create cluster --name N ...`, `export kubeconfig --name N`
    "kind": """#!/bin/sh
echo "kind $*" >>"$STUB_LOG"
case "$1 $2" in
  "get clusters") cat "$STUB_DIR/kind-clusters" 2>/dev/null; exit 0 ;;
  "create cluster"|"export kubeconfig")
    name=kind; [ "$3" = --name ] && name=$4
    mkdir -p "$HOME/.kube"
    sed "s/@CONTEXT@/kind-$name/g" "$STUB_DIR/kubeconfig" >"$HOME/.kube/config"
    echo "$name" >>"$STUB_DIR/kind-clusters"
    echo "Set kubectl context to \\"kind-$name\\"" >&2 ;;
esac
""",
    "minikube": """#!/bin/sh
echo "minikube $*" >>"$STUB_LOG"
[ "$1 $2" = "start -p" ] || exit 1
mkdir -p "$HOME/.kube"; sed "s/@CONTEXT@/$3/g" "$STUB_DIR/kubeconfig" >"$HOME/.kube/config"
""",
    "docker": """#!/bin/sh
echo "docker $*" >>"$STUB_LOG"
exit "${DOCKER_INFO_RC:-0}"
""",
}


def kube_url(world) -> str:
    return yaml.safe_load(world.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]


class Run:
    def __init__(self, tmp_path: Path, world, tools: tuple[str, ...]) -> None:
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.bin = tmp_path / "path"
        self.bin.mkdir()
        for tool in (*TOOLS, "python3"):
            found = shutil.which(tool, path="/usr/bin:/bin")
            assert found, tool
            (self.bin / tool).symlink_to(os.path.realpath(found))
        for tool in tools:
            (self.bin / tool).write_text(STUBS[tool])
            (self.bin / tool).chmod(0o755)
        self.stub_dir = tmp_path / "stubs"
        self.stub_dir.mkdir()
        self.log = tmp_path / "stub.log"
        # The kubeconfig the stubs write: a context, made current, pointing at the fake API.
        write_kubeconfig(self.stub_dir / "kubeconfig", kube_url(world), "@CONTEXT@")
        env = cli_env(world)
        env.pop("KUBECONFIG")
        for key in [k for k in env if k.startswith("MLFLOW_HELM_") and k not in (
                "MLFLOW_HELM_RETRY_BASE",)]:
            env.pop(key)
        env.update(HOME=str(self.home), PATH=str(self.bin), STUB_LOG=str(self.log),
                   STUB_DIR=str(self.stub_dir), MLFLOW_HELM_PYTHON=sys.executable)
        self.env = env

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=300)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


def test_kind_cluster_made_then_install_and_helm_test(world, tmp_path):
    run = Run(tmp_path, world, ("kind", "docker"))
    out = run()
    assert out.returncode == 0, out.stderr
    assert run.calls() == ["docker info", "kind get clusters",
                           "kind create cluster --name mlflow-helm --wait 180s"]
    assert "making one with kind (docker): mlflow-helm" in out.stderr
    assert "delete it with: kind delete cluster --name mlflow-helm" in out.stderr
    # The install went to the new cluster's context, and ended with how to open the UI.
    upgrades = world.helm_calls("upgrade")
    assert len(upgrades) == 1
    argv = upgrades[0]["argv"]
    assert argv[argv.index("--kube-context") + 1] == "kind-mlflow-helm"
    assert "2 to create" in out.stdout and "  passed" in out.stdout
    assert "kubectl -n mlflow port-forward svc/mlflow 5000:5000" in out.stdout

    # Again: the cluster is configured now, so none is made, and nothing changes.
    again = run()
    assert again.returncode == 0, again.stderr
    assert [c for c in run.calls() if c.startswith("kind create")] == [
        "kind create cluster --name mlflow-helm --wait 180s"]
    assert "making one" not in again.stderr
    assert "nothing to do" in again.stdout
    assert len(world.helm_calls("upgrade")) == 1


def test_minikube_when_there_is_no_kind(world, tmp_path):
    run = Run(tmp_path, world, ("minikube",))
    out = run("--dry-run")
    assert out.returncode == 0, out.stderr
    assert run.calls() == ["minikube start -p mlflow-helm"]
    assert "delete it with: minikube delete -p mlflow-helm" in out.stderr
    config = yaml.safe_load((run.home / ".kube" / "config").read_text())
    assert config["current-context"] == "mlflow-helm"
    assert "Plan for release mlflow in namespace mlflow" in out.stdout


def test_a_configured_context_is_used_as_it_is(world, tmp_path):
    run = Run(tmp_path, world, ("kind", "docker"))
    (run.home / ".kube").mkdir()
    write_kubeconfig(run.home / ".kube" / "config", kube_url(world), "team-dev")
    out = run("--dry-run")
    assert out.returncode == 0, out.stderr
    assert run.calls() == []
    assert "making one" not in out.stderr
    assert "using the current context, team-dev" in out.stderr
    assert "install --local --kube-context team-dev --dry-run\n" in out.stderr


def nothing_changed(run: Run) -> None:
    assert not (run.home / ".local").exists()
    assert not (run.home / ".kube").exists()


def test_no_cluster_and_nothing_to_make_one_stops_first(world, tmp_path):
    run = Run(tmp_path, world, ())
    out = run()
    assert out.returncode == 2
    assert "no cluster is configured" in out.stderr
    assert "neither kind nor minikube is installed" in out.stderr
    assert "https://kind.sigs.k8s.io/docs/user/quick-start/#installation" in out.stderr
    assert "https://minikube.sigs.k8s.io/docs/start/" in out.stderr
    nothing_changed(run)
    assert world.helm_calls() == []


def test_kind_without_a_container_engine(world, tmp_path):
    run = Run(tmp_path, world, ("kind",))
    out = run()
    assert out.returncode == 2
    assert "kind needs Docker or Podman, neither of which is installed" in out.stderr
    assert run.calls() == []
    nothing_changed(run)


def test_docker_installed_but_not_running(world, tmp_path):
    run = Run(tmp_path, world, ("kind", "docker"))
    out = run(DOCKER_INFO_RC="1")
    assert out.returncode == 2
    assert "docker is installed but not running" in out.stderr
    assert run.calls() == ["docker info"]
    nothing_changed(run)


@pytest.mark.parametrize("helm, says", [
    ("missing", "Helm not found (HELM_BIN=missing)"),
    ("old", "Helm v3.12.3 is too old"),
])
def test_helm_missing_or_too_old(world, tmp_path, helm, says):
    run = Run(tmp_path, world, ("kind", "docker"))
    old = tmp_path / "old-helm"
    old.write_text("#!/bin/sh\necho v3.12.3\n")
    old.chmod(0o755)
    out = run(HELM_BIN=str(old) if helm == "old" else "missing")
    assert out.returncode == 2
    assert says in out.stderr
    assert "install Helm 3.17 or later, or 4 (https://helm.sh/docs/intro/install/" in out.stderr
    assert run.calls() == []
    nothing_changed(run)


@pytest.mark.e2e
def test_real_virtualenv_built_once_from_a_copy(world, tmp_path):
    """No MLFLOW_HELM_PYTHON: the virtualenv is made and pip installs the checkout (from the
    package index this machine is configured with, about 20 s); the checkout is left as it
    was, and a second run reuses the environment."""
    run = Run(tmp_path, world, ("kind", "docker"))
    env = {k: v for k, v in run.env.items() if k != "MLFLOW_HELM_PYTHON"}
    before = sorted(p.name for p in REPO_ROOT.iterdir())
    out = subprocess.run([str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    venv = run.home / ".local" / "share" / "mlflow-helm" / "venv"
    assert f"setting up its Python environment in {venv}" in out.stderr
    assert (venv / "bin" / "mlflow-helm").exists()
    assert f"the CLI is {venv}/bin/mlflow-helm" in out.stderr
    assert sorted(p.name for p in REPO_ROOT.iterdir()) == before
    again = subprocess.run([str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"CLI up to date in {venv}" in again.stderr
    assert "setting up" not in again.stderr
