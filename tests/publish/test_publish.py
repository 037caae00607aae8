"""publish() against a real OCI registry on loopback, on Helm 3 and Helm 4.

Each test pushes under its own repository path, so tests never see each other's charts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from mlflow_helm.errors import BadFlag, HelmFailed, UserError
from mlflow_helm.publish import PublishResult, publish

from .conftest import CHART_DIR, free_port, make_keys

CHART = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
VERSION = str(CHART["version"])
APP_VERSION = str(CHART["appVersion"])


def run(helm: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def repo_for(request, registry: str) -> str:
    """oci://REGISTRY/<this test>: a repository path of the test's own."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"oci://{registry}/{name}"


@pytest.fixture
def published(helm, registry, keys, request) -> tuple[str, PublishResult, list[str]]:
    """The chart, signed with the throwaway key, published once; (repo, result, output)."""
    repo = repo_for(request, registry)
    lines: list[str] = []
    result = publish(repo, chart=CHART_DIR, sign=True, key=keys.name, keyring=keys.secring,
                     plain_http=True, helm_bin=helm, echo=lines.append)
    return repo, result, lines


def test_publish_prints_reference_and_digest_it_checked(published):
    repo, result, lines = published
    assert result.reference == f"{repo}/mlflow:{VERSION}"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", result.digest)
    assert f"Pushed: {repo}/mlflow:{VERSION}" in lines
    assert f"Digest: {result.digest}" in lines
    assert lines[-1].startswith("Verified: pulled") and "signature verified" in lines[-1]


def test_show_chart_from_registry(helm, published):
    repo, result, _ = published
    res = run(helm, "show", "chart", f"{repo}/mlflow", "--version", VERSION, "--plain-http")
    assert res.returncode == 0, res.stderr
    chart = yaml.safe_load(res.stdout)
    assert (chart["name"], chart["version"], chart["appVersion"]) == ("mlflow", VERSION,
                                                                      APP_VERSION)
    assert f"Digest: {result.digest}" in res.stderr


def test_pull_verify_with_the_public_key(helm, published, keys, tmp_path):
    repo, _, _ = published
    res = run(helm, "pull", f"{repo}/mlflow", "--version", VERSION, "--plain-http",
              "--verify", "--keyring", str(keys.pubring), "--destination", str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = res.stdout + res.stderr
    assert "Signed by: mlflow-helm test" in out
    assert "Chart Hash Verified: sha256:" in out
    assert (tmp_path / f"mlflow-{VERSION}.tgz.prov").is_file()


def test_pull_verify_fails_with_another_key(helm, published, tmp_path):
    repo, _, _ = published
    stranger = make_keys(tmp_path / "gpg", "stranger")
    res = run(helm, "pull", f"{repo}/mlflow", "--version", VERSION, "--plain-http",
              "--verify", "--keyring", str(stranger.pubring), "--destination",
              str(tmp_path / "out"))
    assert res.returncode != 0
    assert not (tmp_path / "out" / f"mlflow-{VERSION}.tgz").exists()


def test_template_straight_from_the_oci_reference(helm, published):
    repo, _, _ = published
    res = run(helm, "template", "mlflow", f"{repo}/mlflow", "--version", VERSION,
              "--plain-http")
    assert res.returncode == 0, res.stderr
    kinds = {doc["kind"] for doc in yaml.safe_load_all(res.stdout) if doc}
    assert {"Deployment", "Service", "StatefulSet"} <= kinds


def test_second_push_of_a_version_is_refused(helm, published):
    repo, first, _ = published
    with pytest.raises(UserError, match="already published; refusing to overwrite") as err:
        publish(repo, chart=CHART_DIR, plain_http=True, helm_bin=helm, echo=lambda _: None)
    assert "bump `version`" in err.value.hint
    # The published bytes are untouched.
    res = run(helm, "show", "chart", f"{repo}/mlflow", "--version", VERSION, "--plain-http")
    assert f"Digest: {first.digest}" in res.stderr


def test_version_override_keeps_app_version(helm, registry, request, tmp_path):
    repo = repo_for(request, registry)
    result = publish(repo, chart=CHART_DIR, version="9.8.7-rc.1", plain_http=True,
                     helm_bin=helm, destination=tmp_path, echo=lambda _: None)
    assert result.reference.endswith("/mlflow:9.8.7-rc.1")
    assert Path(result.archive) == tmp_path / "mlflow-9.8.7-rc.1.tgz"
    assert result.provenance == "" and not result.signed
    res = run(helm, "show", "chart", f"{repo}/mlflow", "--version", "9.8.7-rc.1",
              "--plain-http")
    chart = yaml.safe_load(res.stdout)
    assert (chart["version"], chart["appVersion"]) == ("9.8.7-rc.1", APP_VERSION)


def test_unreachable_registry_fails_with_a_clear_message(helm, tmp_path):
    dead = f"oci://127.0.0.1:{free_port()}/charts"
    with pytest.raises(HelmFailed) as err:
        publish(dead, chart=CHART_DIR, plain_http=True, helm_bin=helm,
                destination=tmp_path / "out", echo=lambda _: None)
    assert "cannot reach registry 127.0.0.1:" in err.value.message
    assert "connection refused" in err.value.message
    assert "check the registry address" in err.value.hint
    assert "Traceback" not in str(err.value)
    assert not (tmp_path / "out").exists()  # refused before packaging


def test_helm3_cannot_sign_with_ed25519_and_leaves_no_unsigned_archive(helm3, registry,
                                                                       request, tmp_path):
    ed = make_keys(tmp_path / "gpg", "ed key", algo="ed25519")
    with pytest.raises(HelmFailed, match="helm package failed") as err:
        publish(repo_for(request, registry), chart=CHART_DIR, sign=True, key=ed.name,
                keyring=ed.secring, plain_http=True, helm_bin=helm3,
                destination=tmp_path / "out", echo=lambda _: None)
    assert "RSA" in err.value.hint
    assert not list((tmp_path / "out").glob("*.tgz"))


def test_dry_run_says_what_and_where_and_runs_nothing(capsys):
    result = publish("oci://europe-west1-docker.pkg.dev/my-project/charts", chart=CHART_DIR,
                     sign=True, key="release key", keyring=CHART_DIR / "Chart.yaml",
                     dry_run=True, helm_bin="/nonexistent/helm",
                     access_token=lambda: pytest.fail("a dry run must not fetch a token"))
    out = capsys.readouterr().out
    ref = f"oci://europe-west1-docker.pkg.dev/my-project/charts/mlflow:{VERSION}"
    assert result.dry_run and result.digest == "" and result.reference == ref
    assert "+ create    chart" in out and ref in out
    assert "signed with key 'release key'" in out
    assert "oauth2accesstoken" in out


def test_a_chart_failing_lint_is_not_published(helm, registry, request, tmp_path):
    broken = tmp_path / "mlflow"
    shutil.copytree(CHART_DIR, broken)
    (broken / "templates" / "broken.yaml").write_text("{{ .Values.nope.nothing }}\n")
    repo = repo_for(request, registry)
    with pytest.raises(HelmFailed, match="helm lint --strict") as err:
        publish(repo, chart=broken, plain_http=True, helm_bin=helm,
                destination=tmp_path / "out", echo=lambda _: None)
    assert "nil pointer" in err.value.message
    assert not (tmp_path / "out").exists()
    res = run(helm, "show", "chart", f"{repo}/mlflow", "--version", VERSION, "--plain-http")
    assert res.returncode != 0 and "not found" in res.stderr


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"registry": "ghcr.io/owner/charts"}, "not an OCI repository prefix"),
    ({"registry": "oci://ghcr.io/owner/charts/mlflow:0.1.0"}, "not an OCI repository prefix"),
    ({"version": "1.0"}, "not a semantic version"),
    ({"sign": True}, "--sign needs --key"),
    ({"sign": True, "key": "k", "keyring": "/nonexistent"}, "is not a file"),
    ({"key": "k"}, "need --sign"),
    ({"sign": True, "key": "k", "keyring": __file__, "passphrase_file": "-"}, "is not a file"),
])
def test_bad_flags_fail_before_any_helm_call(kwargs, message):
    args = {"registry": "oci://ghcr.io/owner/charts", **kwargs}
    with pytest.raises(BadFlag, match=re.escape(message)):
        publish(args.pop("registry"), chart=CHART_DIR, helm_bin="/nonexistent/helm", **args)
