"""--debug logs every Google and Kubernetes API call (method, path, status, duration) and
never a body or a credential (src/mlflow_helm/apilog.py)."""

from __future__ import annotations

import base64
import re

from click.testing import CliRunner

from mlflow_helm.cli import main
from tests.cli.conftest import PROJECT, cli_env

LINE = re.compile(r"^\[api\] (\S+) (GET|POST|PUT|PATCH|DELETE) (/\S*) (\d{3}) (\d+\.\d{3})s$")


def api_lines(text: str) -> list[tuple[str, str, str, str]]:
    return [m.groups()[:4] for m in map(LINE.match, text.splitlines()) if m]


def test_debug_logs_every_api_call_and_no_secret(world):
    args = ["install", "--database", "cloudsql", "--cloudsql-instance", "pg", "--bucket",
            "gs://team-artifacts", "--create-bucket", "--skip-tests", "--debug"]
    result = CliRunner().invoke(main, args, env=cli_env(world))
    assert result.exit_code == 0, result.output
    lines = api_lines(result.output)
    # One line per call the fakes saw: Google's, Cloud Storage's and Kubernetes'.
    assert len([x for x in lines if x[0] not in ("kube", "storage")]) == \
        len(world.google.calls)
    assert len([x for x in lines if x[0] == "storage"]) == len(world.gcs.calls)
    assert len([x for x in lines if x[0] == "kube"]) == len(
        [c for c in world.kube.calls if not c.agent.startswith("Helm")])
    assert ("sqladmin", "GET", f"/sqladmin/v1/projects/{PROJECT}/instances/pg", "200") in lines
    assert ("serviceusage", "GET", "/serviceusage/v1/projects/123456789012/services:batchGet"
            "?names=projects%2F123456789012%2Fservices%2Fcloudresourcemanager.googleapis.com"
            "&names=projects%2F123456789012%2Fservices%2Fcontainer.googleapis.com"
            "&names=projects%2F123456789012%2Fservices%2Fiam.googleapis.com"
            "&names=projects%2F123456789012%2Fservices%2Fsqladmin.googleapis.com"
            "&names=projects%2F123456789012%2Fservices%2Fstorage.googleapis.com",
            "200") in lines
    assert ("kube", "GET", "/version", "200") in lines
    assert any(x[0] == "storage" and x[1] == "POST" and x[2].startswith("/storage/v1/b")
               for x in lines)
    # The database password went into a Secret and a Cloud SQL user: in no log line.
    secret = world.kube.secret("mlflow", "mlflow-db")
    password = base64.b64decode(secret["data"]["password"]).decode()
    assert password not in result.output
    assert "Authorization" not in result.output and "Bearer" not in result.output


def test_without_debug_no_api_lines(world):
    result = CliRunner().invoke(main, ["plan", "--local"], env=cli_env(world))
    assert result.exit_code == 0, result.output
    assert api_lines(result.output) == []
