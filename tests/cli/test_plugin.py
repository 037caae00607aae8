"""The Helm plugin, installed into a temporary Helm home by the real Helm 3 and Helm 4.

MLFLOW_HELM_PYTHON points the install hook and the launcher at this test's interpreter
(which has mlflow_helm installed), so nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.cli.conftest import cli_env
from tests.conftest import REPO_ROOT
from tests.fakes.http import self_signed


def helm_home(tmp_path, world=None) -> dict:
    env = cli_env(world) if world else dict(os.environ)
    # Helm 4 installs into $HELM_DATA_HOME/plugins; make HELM_PLUGINS agree on both.
    data = tmp_path / "data"
    env.update(HELM_DATA_HOME=str(data), HELM_PLUGINS=str(data / "plugins"),
               HELM_CONFIG_HOME=str(tmp_path / "config"), HELM_CACHE_HOME=str(tmp_path / "cache"),
               MLFLOW_HELM_PYTHON=sys.executable)
    for var in ("HELM_NAMESPACE", "HELM_KUBECONTEXT", "HELM_BIN", "HELM_DEBUG"):
        env.pop(var, None)
    return env


def install_plugin(helm: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([helm, "plugin", "install", str(REPO_ROOT / "plugin")], env=env,
                          capture_output=True, text=True, timeout=120)


def test_plugin_installs_and_shows_help(helm, tmp_path):
    env = helm_home(tmp_path)
    installed = install_plugin(helm, env)
    assert installed.returncode == 0, installed.stderr
    assert "Installed plugin: mlflow-gcp" in installed.stdout + installed.stderr
    assert f"using {sys.executable}" in installed.stdout  # the install hook ran
    listed = subprocess.run([helm, "plugin", "list"], env=env, capture_output=True, text=True)
    assert "mlflow-gcp" in listed.stdout
    out = subprocess.run([helm, "mlflow-gcp", "--help"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Usage: helm mlflow-gcp" in out.stdout
    for command in ("install", "plan", "status", "test", "render", "uninstall", "publish"):
        assert command in out.stdout


def test_plugin_plan_follows_helm_namespace(helm, tmp_path, world):
    """`helm -n team-a mlflow-gcp plan`: Helm's -n reaches the CLI as HELM_NAMESPACE, and
    HELM_BIN (the real Helm) looks the release up through the fake Kubernetes API."""
    env = helm_home(tmp_path, world)  # HELM_BIN removed: Helm sets it to itself
    assert install_plugin(helm, env).returncode == 0
    out = subprocess.run([helm, "-n", "team-a", "mlflow-gcp", "plan", "--local", "--output",
                          "json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["namespace"] == "team-a" and doc["command"] == "plan"
    assert {(c["kind"], c["name"], c["action"]) for c in doc["changes"]} == {
        ("namespace", "team-a", "create"), ("helm release", "team-a/mlflow", "create")}
    # Helm (not the recorder) answered the release lookup, through the fake API server.
    assert world.helm_calls() == []
    assert any(c.path == "/api/v1/namespaces/team-a/secrets" for c in world.kube.calls)


def test_plugin_without_namespace_flag_uses_the_clis_default(helm, tmp_path, world):
    """Without -n Helm exports HELM_NAMESPACE=default to the plugin (pkg/cli
    EnvSettings.Namespace); the plugin then plans for `mlflow`, as `mlflow-helm` does, and
    `-n default` after the plugin's name cannot be told apart, so MLFLOW_HELM_NAMESPACE is
    the way to choose it."""
    env = helm_home(tmp_path, world)
    assert install_plugin(helm, env).returncode == 0
    out = subprocess.run([helm, "mlflow-gcp", "plan", "--local", "-o", "json"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["namespace"] == "mlflow"
    out = subprocess.run([helm, "mlflow-gcp", "plan", "--local", "-o", "json"], text=True,
                         env={**env, "MLFLOW_HELM_NAMESPACE": "default"},
                         capture_output=True, timeout=120)
    assert json.loads(out.stdout)["namespace"] == "default"


def test_plugin_without_a_package_stays_usable_and_says_how_to_fix(helm, tmp_path):
    """A plugin directory with no checkout around it and no wheel in it: the install hook
    cannot make the environment, but it does not fail (Helm 3 and 4 both keep a plugin whose
    install hook failed registered, and a re-install then says "plugin already exists"); the
    launcher says why and how to fix on every use, and works once there is a source."""
    import shutil

    copy = tmp_path / "lone" / "plugin"
    shutil.copytree(REPO_ROOT / "plugin", copy, ignore=shutil.ignore_patterns(".venv"))
    env = helm_home(tmp_path)
    env.pop("MLFLOW_HELM_PYTHON")
    args = [helm, "plugin", "install", str(copy)]
    installed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    assert "carries no mlflow-helm package" in installed.stderr
    assert "retries it on first use" in installed.stderr
    out = subprocess.run([helm, "mlflow-gcp", "--version"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1
    assert "the last set-up did not finish; trying again" in out.stderr
    assert "fix: install a packaged release" in out.stderr
    assert (tmp_path / "data" / "mlflow-gcp" / "error").is_file()
    # Healed without a re-install: the next use with a package source works.
    out = subprocess.run([helm, "mlflow-gcp", "--version"], capture_output=True, text=True,
                         env={**env, "MLFLOW_HELM_PYTHON": sys.executable}, timeout=60)
    assert out.returncode == 0 and "mlflow-helm, version" in out.stdout, out.stderr


def test_plugin_installs_from_a_git_url(helm, tmp_path):
    """A git URL install clones the repository and reads plugin.yaml at its root: a repository
    laid out like ours (plugin/ plus plugin.repo-root.yaml at the root), served as a file://
    git URL. Helm 4 needs --verify=false (a git checkout has no provenance)."""
    import shutil

    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "plugin", repo / "plugin",
                    ignore=shutil.ignore_patterns(".venv"))
    shutil.copy(REPO_ROOT / "plugin.yaml", repo / "plugin.yaml")  # the root manifest, as committed
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "plugin"], check=True)
    env = helm_home(tmp_path / "home")
    args = [helm, "plugin", "install", f"file://{repo}"]
    version = subprocess.run([helm, "version", "--template", "{{ .Version }}"],
                             capture_output=True, text=True, check=True).stdout
    if version.startswith("v4"):
        args.append("--verify=false")
    installed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert f"using {sys.executable}" in installed.stdout
    out = subprocess.run([helm, "mlflow-gcp", "--version"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "mlflow-helm, version" in out.stdout, out.stderr
    # `helm plugin update` pulls the clone and runs the update hook (Helm updates plugins
    # installed from a VCS only, pkg/plugin/installer FindSource, both majors).
    (repo / "plugin" / "NEWS").write_text("a change upstream\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "upstream change"], check=True)
    updated = subprocess.run([helm, "plugin", "update", "mlflow-gcp"], env=env,
                             capture_output=True, text=True, timeout=120)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "Updated plugin: mlflow-gcp" in updated.stdout + updated.stderr
    assert f"using {sys.executable}" in updated.stdout  # the update hook ran
    plugin_dir = subprocess.run([helm, "env", "HELM_PLUGINS"], env=env, capture_output=True,
                                text=True).stdout.strip()
    assert any((p / "plugin" / "NEWS").is_file() for p in Path(plugin_dir).iterdir())


def test_plugin_with_kube_apiserver_and_token_sends_every_call_there(helm, tmp_path, world):
    """`helm --kube-apiserver URL --kube-token T --kube-ca-file CA mlflow-gcp plan`: Helm
    exports its flags to the plugin as HELM_KUBEAPISERVER, HELM_KUBETOKEN and
    HELM_KUBECAFILE (pkg/cli EnvSettings, both majors); the CLI's own Kubernetes calls and
    the inner `helm` calls all go to URL, over TLS checked against CA, with T, although the
    kubeconfig names another server and another user. (A second fake API server, on HTTPS:
    client-go sends a token over TLS only.)"""
    import ssl

    import yaml

    from tests.fakes.kube import FakeKube

    cert, key = self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    other = FakeKube()
    url = other.serve(tls)
    try:
        env = helm_home(tmp_path, world)
        assert install_plugin(helm, env).returncode == 0
        config = yaml.safe_load(world.kubeconfig.read_text())
        config["clusters"][0]["cluster"]["server"] = "http://127.0.0.1:9"  # nothing listens
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_text(yaml.safe_dump(config))
        env["KUBECONFIG"] = str(elsewhere)
        out = subprocess.run([helm, "--kube-apiserver", url, "--kube-token", "token-of-the-flag",
                              "--kube-ca-file", cert, "-n", "team-a", "mlflow-gcp", "plan",
                              "--local", "--output", "json"], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        ours = [c for c in other.calls if not c.agent.startswith("Helm")]
        helms = [c for c in other.calls if c.agent.startswith("Helm")]
        assert ours and helms  # both reached the flag's API server
        assert {c.auth for c in other.calls} == {"token-of-the-flag"}
        assert not [c for c in world.kube.calls if c.path.startswith("/api/v1/namespaces/team-a")]
    finally:
        other.close()


def test_plugin_with_kubeconfig_of_several_files(helm, tmp_path, world):
    """KUBECONFIG=a:b (the cluster and user in one file, the context in another): merged as
    client-go merges it, by Helm and by the CLI, instead of `--kubeconfig a:b`."""
    import yaml

    env = helm_home(tmp_path, world)
    assert install_plugin(helm, env).returncode == 0
    config = yaml.safe_load(world.kubeconfig.read_text())
    first, second = tmp_path / "clusters.yaml", tmp_path / "contexts.yaml"
    first.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config",
                                     "clusters": config["clusters"],
                                     "users": config["users"]}))
    second.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config",
                                      "current-context": config["current-context"],
                                      "contexts": config["contexts"]}))
    env["KUBECONFIG"] = f"{first}{os.pathsep}{second}"
    before = len(world.kube.calls)
    out = subprocess.run([helm, "-n", "team-b", "mlflow-gcp", "plan", "--local", "--output",
                          "json"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    calls = world.kube.calls[before:]
    assert any(c.agent.startswith("Helm") for c in calls)
    assert any(not c.agent.startswith("Helm") for c in calls)
    assert json.loads(out.stdout)["namespace"] == "team-b"
