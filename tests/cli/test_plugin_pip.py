"""The plugin's real set-up path on Helm 3 and 4: no MLFLOW_HELM_PYTHON shortcut, so the
install hook makes a virtualenv and pip installs mlflow-helm and its dependencies (from the
package index this machine is configured with; about 20 s each).

- A packaged plugin (scripts/package-plugin.sh) served over HTTP installs the wheel it
  carries, not a package name; so does the same package pushed to a real OCI registry
  (scripts/push-plugin.py, Debian's docker-registry on loopback) and installed by Helm 4
  (Helm 3 has no OCI plugin source).
- A local checkout installs from a copy: the checkout gets no virtualenv, build/ or
  egg-info; an edit of src/ re-syncs the environment on the next use.
- The environment lives under HELM_DATA_HOME, and `helm plugin uninstall` removes it (the
  inline delete hook: Helm runs it after deleting the plugin directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import REPO_ROOT
from tests.publish.conftest import registry  # noqa: F401 (a fixture: the real OCI registry)

pytestmark = pytest.mark.e2e


def real_home(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HELM_", "MLFLOW_HELM_"))}
    env.update(HELM_DATA_HOME=str(tmp_path / "data"), HELM_CONFIG_HOME=str(tmp_path / "config"),
               HELM_CACHE_HOME=str(tmp_path / "cache"))
    # python3 on PATH is the machine's, as a user's would be; not this suite's virtualenv.
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not p.startswith(sys.prefix))
    return env


def major(helm: str) -> int:
    out = subprocess.run([helm, "version", "--template", "{{ .Version }}"], capture_output=True,
                         text=True, check=True).stdout
    return int(out.lstrip("v").split(".")[0])


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    out = tmp_path_factory.mktemp("package")
    done = subprocess.run([str(REPO_ROOT / "scripts" / "package-plugin.sh"), str(out)],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, check=True)
    return out, done.stdout.strip()


def serve_gzip(directory):
    """A plain HTTP server; Helm 3 takes a plugin archive only as application/gzip or
    application/x-gzip (pkg/plugin/installer isRemoteHTTPArchive)."""
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(directory), **kw)

        def guess_type(self, path):
            return "application/gzip"

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_packaged_plugin_over_http_installs_the_wheel_it_carries(helm, tmp_path, package):
    directory, tgz = package
    server = serve_gzip(directory)
    env = real_home(tmp_path)
    try:
        url = f"http://127.0.0.1:{server.server_port}/{os.path.basename(tgz)}"
        args = [helm, "plugin", "install", url] + (["--verify=false"] if major(helm) >= 4
                                                    else [])
        installed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    finally:
        server.shutdown()
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "setting up its Python environment in" in installed.stderr  # progress, first
    assert "Collecting" in installed.stderr  # pip's, one line per package
    venv = tmp_path / "data" / "mlflow-gcp" / "venv"
    source = (tmp_path / "data" / "mlflow-gcp" / "source").read_text().strip()
    assert source.endswith("/dist/mlflow_helm-0.1.0-py3-none-any.whl"), source
    out = subprocess.run([helm, "mlflow-gcp", "--version"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "mlflow-helm, version 0.1.0" in out.stdout, out.stderr
    assert (venv / "bin" / "python").is_file()
    removed = subprocess.run([helm, "plugin", "uninstall", "mlflow-gcp"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "data" / "mlflow-gcp").exists()


def test_packaged_plugin_from_an_oci_registry(helm, tmp_path, package, registry):  # noqa: F811
    """Helm 4.1.4 pulls a plugin whose manifest has the plugin config media type and a layer
    titled mlflow-gcp-VERSION.tgz (pkg/registry/plugin.go); Helm 3.17.3's installer has no
    OCI source (pkg/plugin/installer/installer.go NewForSource: a directory, an HTTP
    archive, else VCS), so it refuses the reference and users install the tgz over HTTP."""
    _directory, tgz = package
    pushed = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "push-plugin.py"), tgz,
                             f"oci://{registry}/helm/plugins", "--plain-http"],
                            capture_output=True, text=True, timeout=120)
    assert pushed.returncode == 0, pushed.stderr
    ref = f"oci://{registry}/helm/plugins/mlflow-gcp:0.1.0"
    assert f"pushed {ref}" in pushed.stdout
    env = real_home(tmp_path)
    if major(helm) < 4:
        refused = subprocess.run([helm, "plugin", "install", ref], env=env,
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "Cannot detect VCS" in refused.stderr
        return
    installed = subprocess.run([helm, "plugin", "install", ref, "--plain-http",
                                "--verify=false"], env=env, capture_output=True, text=True,
                               timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Installed plugin: mlflow-gcp" in installed.stdout
    assert "setting up its Python environment in" in installed.stderr
    source = (tmp_path / "data" / "mlflow-gcp" / "source").read_text().strip()
    assert source.endswith("/dist/mlflow_helm-0.1.0-py3-none-any.whl"), source
    out = subprocess.run([helm, "mlflow-gcp", "--version"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "mlflow-helm, version 0.1.0" in out.stdout, out.stderr
    removed = subprocess.run([helm, "plugin", "uninstall", "mlflow-gcp"], env=env,
                             capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "data" / "mlflow-gcp").exists()


def test_local_checkout_stays_clean_and_edits_reach_the_plugin(helm, tmp_path):
    checkout = tmp_path / "checkout"
    files = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if name.startswith(("src/", "charts/", "plugin/")) or name in ("pyproject.toml",
                                                                        "README.md"):
            src = REPO_ROOT / name
            dst = checkout / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            elif src.is_file():
                shutil.copy2(src, dst)
    before = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*"))
    env = real_home(tmp_path)
    args = [helm, "plugin", "install", str(checkout / "plugin")] + (
        ["--verify=false"] if major(helm) >= 4 else [])
    installed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    after = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*"))
    assert after == before  # no .venv, build/ or egg-info in the user's checkout
    # An edit reaches the plugin on the next use, without `helm plugin update` (which Helm
    # refuses for a local directory: "cannot get information about plugin source").
    init = checkout / "src" / "mlflow_helm" / "__init__.py"
    init.write_text(init.read_text().replace('__version__ = "0.1.0"', '__version__ = "0.1.1"'))
    out = subprocess.run([helm, "mlflow-gcp", "--version"], env=env, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "mlflow-helm, version 0.1.1" in out.stdout
    assert "setting up its Python environment" in out.stderr
    again = subprocess.run([helm, "mlflow-gcp", "--version"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert again.stderr == ""  # up to date: no re-sync
    assert sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*")) == before
