"""The Artifact Registry path: log in with the ADC token through stdin, never argv, files or
output. A recording stand-in for Helm logs each call and hands it to the real Helm, which
talks to the loopback registry; the host check is swapped so loopback counts as
`*-docker.pkg.dev`, and the token source is a fake."""

from __future__ import annotations

import base64
import json
import os
import sys
from pathlib import Path

import pytest

from mlflow_helm.errors import UserError
from mlflow_helm.publish import GCP_TOKEN_USER, is_artifact_registry, publish

from .conftest import CHART_DIR

TOKEN = "ya29.fake-adc-token-for-tests-0123456789"

RECORDER = """#!{python}
import json, os, subprocess, sys
args = sys.argv[1:]
stdin = sys.stdin.read() if "--password-stdin" in args else None
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": args, "stdin": stdin,
                          "registry_config": os.environ.get("HELM_REGISTRY_CONFIG")}}) + "\\n")
sys.exit(subprocess.run([{helm!r}, *args], input=stdin, text=True).returncode)
"""


@pytest.fixture
def recording_helm(helm, tmp_path) -> tuple[str, Path]:
    log = tmp_path / "calls.jsonl"
    script = tmp_path / "helm"
    script.write_text(RECORDER.format(python=sys.executable, log=str(log), helm=helm))
    script.chmod(0o755)
    return str(script), log


def calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def files_holding_token(*roots: Path) -> list[Path]:
    needles = [TOKEN.encode(), base64.b64encode(f"{GCP_TOKEN_USER}:{TOKEN}".encode())]
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and any(n in path.read_bytes() for n in needles):
                found.append(path)
    return found


@pytest.mark.parametrize(("host", "expected"), [
    ("europe-west1-docker.pkg.dev", True),
    ("us-docker.pkg.dev", True),
    ("US-DOCKER.PKG.DEV:443", True),
    ("ghcr.io", False),
    ("docker.pkg.dev.example.com", False),
    ("127.0.0.1:5000", False),
])
def test_artifact_registry_hosts(host, expected):
    assert is_artifact_registry(host) is expected


def test_login_takes_the_token_on_stdin_and_leaves_no_copy(
        helm, recording_helm, registry, helm_home, tmp_path, request):
    helm_bin, log = recording_helm
    lines: list[str] = []
    result = publish(f"oci://{registry}/ar-{request.node.callspec.id}", chart=CHART_DIR,
                     plain_http=True, helm_bin=helm_bin, echo=lines.append,
                     destination=tmp_path / "out", access_token=lambda: TOKEN,
                     needs_gcp_login=lambda host: host == registry)
    assert result.digest.startswith("sha256:")

    recorded = calls(log)
    logins = [c for c in recorded if c["argv"][:2] == ["registry", "login"]]
    expected = ["registry", "login", registry, "--username", "oauth2accesstoken",
                "--password-stdin"]
    if "helm4" in request.node.callspec.id:
        expected.append("--plain-http")  # Helm 3's login has no such flag
    assert [c["argv"] for c in logins] == [expected]
    assert logins[0]["stdin"] == TOKEN
    # Never in argv, never in what the user sees.
    assert not any(TOKEN in arg for c in recorded for arg in c["argv"])
    assert not any(TOKEN in line for line in lines)
    # Every registry call used one private registry config, logged out and removed at the end.
    registry_calls = [c for c in recorded if c["argv"][0] != "version"]
    configs = {c["registry_config"] for c in registry_calls}
    assert len(configs) == 1
    private = Path(configs.pop())
    assert private != Path(os.environ["HELM_REGISTRY_CONFIG"])
    if os.path.isdir("/dev/shm"):
        assert private.parent.parent == Path("/dev/shm")  # memory, not disk
    assert registry_calls[-1]["argv"][:2] == ["registry", "logout"]
    assert not private.parent.exists()
    assert files_holding_token(helm_home, tmp_path / "out") == []


def test_no_credentials_stops_before_any_registry_call(helm, recording_helm, registry):
    helm_bin, log = recording_helm

    def no_adc() -> str:
        raise UserError("no Application Default Credentials", "gcloud auth ...")

    with pytest.raises(UserError, match="no Application Default Credentials"):
        publish(f"oci://{registry}/ar-none", chart=CHART_DIR, plain_http=True,
                helm_bin=helm_bin, access_token=no_adc, needs_gcp_login=lambda _: True)
    assert [c["argv"][0] for c in calls(log)] == ["version"]


def test_adc_without_credentials_is_a_user_error(monkeypatch, tmp_path):
    from mlflow_helm.publish import adc_access_token

    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(UserError) as err:
        adc_access_token()
    assert "Application Default Credentials" in err.value.message
    assert "gcloud auth application-default login" in err.value.hint
