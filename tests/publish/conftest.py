"""A real OCI registry on loopback (Debian `docker-registry`, plain HTTP, no auth), throwaway
GnuPG keys, and a Helm home of the test's own so nothing touches ~/.config/helm."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "mlflow"
REGISTRY_BIN = os.environ.get("DOCKER_REGISTRY_BIN", "/usr/bin/docker-registry")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def registry(tmp_path_factory) -> str:
    """HOST:PORT of a fresh registry for this test session (one per xdist worker)."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.fail(f"{REGISTRY_BIN} not found: run scripts/bootstrap.sh "
                    "(Debian package docker-registry)", pytrace=False)
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}}}\n"
        f"http: {{addr: '127.0.0.1:{port}'}}\n"
    )
    log = (root / "registry.log").open("w")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1) as resp:
                if resp.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"docker-registry did not start: {(root / 'registry.log').read_text()}",
                        pytrace=False)
        time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@dataclass
class Keys:
    name: str
    secring: Path  # legacy secret keyring: what `helm package --sign --keyring` reads
    pubring: Path  # public keyring: what users give `helm pull --verify --keyring`


def make_keys(home: Path, name: str, algo: str = "rsa2048") -> Keys:
    """A passphrase-less signing key in its own GNUPGHOME, exported as Helm's keyrings."""
    if not shutil.which("gpg"):
        pytest.fail("gpg not found: run scripts/bootstrap.sh (Debian package gnupg)",
                    pytrace=False)
    home.mkdir(mode=0o700, parents=True)
    env = {**os.environ, "GNUPGHOME": str(home)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                    f"{name} <{name.replace(' ', '-')}@example.invalid>", algo, "sign", "never"],
                   env=env, check=True, capture_output=True)
    keys = Keys(name, home / "secring.gpg", home / "pubring.gpg")
    for flag, path in (("--export-secret-keys", keys.secring), ("--export", keys.pubring)):
        path.write_bytes(subprocess.run(["gpg", "--batch", flag], env=env, check=True,
                                        capture_output=True).stdout)
    return keys


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("gpg") / "home", "mlflow-helm test")


@pytest.fixture(autouse=True)
def helm_home(tmp_path, monkeypatch) -> Path:
    """Helm config, cache and registry logins of this test only."""
    home = tmp_path / "helm-home"
    for var, sub in (("HELM_CONFIG_HOME", "config"), ("HELM_CACHE_HOME", "cache"),
                     ("HELM_DATA_HOME", "data")):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HELM_REGISTRY_CONFIG", str(home / "config" / "registry" / "config.json"))
    return home
