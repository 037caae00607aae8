"""`helm test` for the MLflow chart: the whole path a client takes, through the Service DNS name.

Runs in the MLflow image with the standard library only. Each check prints one line; the first
failure prints what went wrong (the server's own error message when it sent one) and exits 1.

Environment:
  MLFLOW_TEST_URL            base URL, e.g. http://mlflow.ns.svc.cluster.local:5000[/prefix]
  MLFLOW_TEST_VERSION        the MLflow version the server must report
  MLFLOW_TEST_ARTIFACTS      "served" (upload and download through the server) or "direct:<root>"
  MLFLOW_TEST_ARTIFACT_STORE optional: where the server keeps artifacts (gs://bucket/path or
                             a volume path), named when the server cannot write there
  MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD   basic-auth credentials, when on
  MLFLOW_TEST_CONNECT_TO     optional host:port to connect to instead of the URL's, keeping the
                             URL's Host header (like curl --connect-to), for running outside
                             a cluster
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import time
import uuid
from urllib.parse import quote, urlencode, urlsplit

TIMEOUT = 30


class CheckFailed(Exception):
    pass


class Client:
    def __init__(self, url: str, connect_to: str | None, auth: tuple[str, str] | None):
        parts = urlsplit(url)
        self.scheme = parts.scheme
        self.host_header = parts.netloc
        self.prefix = parts.path.rstrip("/")
        self.connect = connect_to or parts.netloc
        self.headers = {"Host": self.host_header, "User-Agent": "mlflow-helm-test"}
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def request(self, method: str, path: str, body: bytes | None = None, content_type=None):
        host, _, port = self.connect.partition(":")
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(host, int(port) if port else None, timeout=TIMEOUT)
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        try:
            conn.request(method, self.prefix + path, body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        except OSError as exc:
            raise CheckFailed(
                f"{method} {self.prefix + path}: cannot reach {self.connect}: {exc}"
            ) from exc
        finally:
            conn.close()

    def api(self, method: str, endpoint: str, payload: dict | None = None) -> dict:
        path = f"/api/2.0/mlflow/{endpoint}"
        if method == "GET" and payload:
            path += "?" + urlencode(payload)
            body = None
        else:
            body = json.dumps(payload or {}).encode()
        status, data = self.request(method, path, body, "application/json")
        if status != 200:
            raise CheckFailed(f"{method} {path} returned HTTP {status}: {explain(data)}")
        return json.loads(data or b"{}")


def explain(data: bytes) -> str:
    """The server's error message, shortened to what a person needs."""
    text = data.decode("utf-8", "replace").strip()
    try:
        parsed = json.loads(text)
        text = parsed.get("message") or parsed.get("detail") or text
    except (ValueError, AttributeError):
        pass
    text = " ".join(str(text).split())
    return text[:600] + ("…" if len(text) > 600 else "") if text else "(empty response)"


def store_hint(status: int) -> str:
    """MLflow answers a failed artifact write with a bare HTTP 500; say where to look."""
    if status < 500:
        return ""
    store = os.environ.get("MLFLOW_TEST_ARTIFACT_STORE")
    return (
        f". The server could not use its artifact store{' ' + store if store else ''}: check that "
        "the GCS bucket exists and the server's Google service account may write to it (or that "
        "the artifact volume is writable); the server's log has the exception"
    )


def check(name: str, fn):
    started = time.monotonic()
    try:
        detail = fn()
    except CheckFailed as exc:
        print(f"FAIL  {name}: {exc}", flush=True)
        raise
    elapsed = time.monotonic() - started
    print(f"ok    {name}{f' ({detail})' if detail else ''} [{elapsed:.2f}s]", flush=True)


def main() -> int:
    url = os.environ["MLFLOW_TEST_URL"]
    expected_version = os.environ.get("MLFLOW_TEST_VERSION", "")
    artifacts = os.environ.get("MLFLOW_TEST_ARTIFACTS", "served")
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    auth = (user, os.environ.get("MLFLOW_TRACKING_PASSWORD", "")) if user else None
    client = Client(url, os.environ.get("MLFLOW_TEST_CONNECT_TO") or None, auth)
    print(f"MLflow helm test against {url}", flush=True)
    state: dict = {}

    def health():
        deadline = time.monotonic() + 60
        while True:
            try:
                status, data = client.request("GET", "/health")
                if status == 200 and data.strip() == b"OK":
                    return None
                problem = f"HTTP {status}: {explain(data)}"
            except CheckFailed as exc:
                problem = str(exc)
            if time.monotonic() > deadline:
                raise CheckFailed(f"/health did not answer OK within 60s: {problem}")
            time.sleep(2)

    def version():
        status, data = client.request("GET", "/version")
        got = data.decode().strip()
        if status != 200:
            raise CheckFailed(f"/version returned HTTP {status}: {explain(data)}")
        if expected_version and got != expected_version:
            raise CheckFailed(
                f"server runs MLflow {got}, the chart's appVersion is {expected_version}"
            )
        return got

    def host_check():
        # An authenticated API call through the Service name: a 403 "Invalid Host header" here
        # means server.allowedHosts does not list the name clients use.
        status, data = client.request(
            "GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
        )
        if status == 403 and b"Host" in data:
            raise CheckFailed(f"the server rejected Host {client.host_header}: {explain(data)}")
        if status not in (200, 404):
            raise CheckFailed(f"HTTP {status}: {explain(data)}")
        return f"Host {client.host_header} accepted"

    def create_experiment():
        name = f"helm-test-{uuid.uuid4().hex[:12]}"
        created = client.api("POST", "experiments/create", {"name": name})
        state["experiment_id"] = created["experiment_id"]
        return f"{name}, id {state['experiment_id']}"

    def create_run():
        run = client.api(
            "POST",
            "runs/create",
            {"experiment_id": state["experiment_id"], "start_time": int(time.time() * 1000)},
        )["run"]
        state["run_id"] = run["info"]["run_id"]
        state["artifact_uri"] = run["info"]["artifact_uri"]
        return state["run_id"]

    def log_param_and_metric():
        run_id = state["run_id"]
        param = {"run_id": run_id, "key": "chart", "value": "mlflow"}
        client.api("POST", "runs/log-parameter", param)
        client.api(
            "POST",
            "runs/log-metric",
            {"run_id": run_id, "key": "accuracy", "value": 0.875,
             "timestamp": int(time.time() * 1000), "step": 1},
        )

    def read_back():
        data = client.api("GET", "runs/get", {"run_id": state["run_id"]})["run"]["data"]
        params = {p["key"]: p["value"] for p in data.get("params", [])}
        metrics = {m["key"]: m["value"] for m in data.get("metrics", [])}
        if params.get("chart") != "mlflow" or metrics.get("accuracy") != 0.875:
            raise CheckFailed(
                f"run data differs from what was logged: params={params} metrics={metrics}"
            )

    def artifact_roundtrip():
        uri = state["artifact_uri"]
        if not uri.startswith("mlflow-artifacts:"):
            raise CheckFailed(f"artifacts are served, but the run's artifact URI is {uri}")
        path = uri.split(":", 1)[1].lstrip("/") + "/helm-test/hello.txt"
        payload = f"hello from helm test {uuid.uuid4()}".encode()
        artifact = "/api/2.0/mlflow-artifacts/artifacts/" + quote(path)
        status, data = client.request("PUT", artifact, payload, "application/octet-stream")
        if status != 200:
            raise CheckFailed(
                f"upload of {path} returned HTTP {status}: {explain(data)}{store_hint(status)}"
            )
        status, data = client.request("GET", artifact)
        if status != 200:
            raise CheckFailed(
                f"download of {path} returned HTTP {status}: {explain(data)}{store_hint(status)}"
            )
        if data != payload:
            raise CheckFailed(
                f"downloaded {len(data)} bytes differ from the {len(payload)} uploaded"
            )
        status, data = client.request("DELETE", artifact)
        if status != 200:
            raise CheckFailed(f"delete of {path} returned HTTP {status}: {explain(data)}")
        return f"{len(payload)} bytes"

    def artifact_root():
        root = artifacts.split(":", 1)[1]
        uri = state["artifact_uri"]
        if not uri.startswith(root):
            raise CheckFailed(f"the run's artifact URI {uri} is not under {root}")
        return f"clients write to {uri} directly"

    def cleanup():
        client.api("POST", "runs/delete", {"run_id": state["run_id"]})
        client.api("POST", "experiments/delete", {"experiment_id": state["experiment_id"]})

    checks = [
        ("health", health),
        ("version", version),
        ("host check", host_check),
        ("create experiment", create_experiment),
        ("create run", create_run),
        ("log param and metric", log_param_and_metric),
        ("read run back", read_back),
    ]
    if artifacts == "served":
        checks.append(("artifact upload, download, delete", artifact_roundtrip))
    else:
        checks.append(("artifact root", artifact_root))
    checks.append(("clean up", cleanup))
    try:
        for name, fn in checks:
            check(name, fn)
    except CheckFailed:
        print("helm test FAILED", flush=True)
        return 1
    print("helm test passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
