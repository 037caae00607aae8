"""The MLflow client through Identity-Aware Proxy: `MLFLOW_TRACKING_TOKEN` carries the ID token.

IAP lets a program through when each request has `Authorization: Bearer <OIDC ID token>` whose
audience is the IAP OAuth client ID (Google Cloud docs, IAP "Programmatic authentication"; IAP
also accepts `Proxy-Authorization`). MLflow's client sends `Authorization: Bearer
$MLFLOW_TRACKING_TOKEN` on every REST call (mlflow/utils/rest_utils.py, `http_request`, from
MlflowHostCreds.token) and on the artifact proxy's uploads and downloads
(mlflow/store/artifact/http_artifact_repo.py uses the same host creds).

IAP itself cannot run here: the stand-in below models only the check that matters to the
client (no bearer token, 401), so what is tested is that every request of a real client run,
artifacts included, carries the token. Validating the token (signature, audience) is Google's.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from e2e_client import run_client

pytestmark = pytest.mark.e2e

TOKEN = "eyJhbGciOiJSUzI1NiJ9.e2e-id-token.signature"  # opaque to MLflow: passed as is

CLIENT = r"""
import json, os, tempfile
import mlflow
mlflow.set_experiment("through-iap")
with mlflow.start_run() as run:
    mlflow.log_param("via", "iap")
    mlflow.log_metric("loss", 0.5)
    path = os.path.join(tempfile.mkdtemp(), "model.txt")
    open(path, "w").write("weights")
    mlflow.log_artifact(path)
local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model.txt")
print(json.dumps({"run": run.info.run_id, "artifact": open(local).read()}))
"""


def iap_stand_in(upstream_port: int, upstream_host: str):
    seen: list[tuple[str, str, bool]] = []  # method, path, had the bearer token

    class Handler(BaseHTTPRequestHandler):
        def _relay(self) -> None:
            ok = self.headers.get("Authorization") == f"Bearer {TOKEN}"
            seen.append((self.command, self.path, ok))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            if not ok:
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() not in ("host", "authorization", "connection")}
            headers["Host"] = upstream_host
            conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            conn.close()

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _relay

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_the_mlflow_client_passes_iap_with_its_tracking_token(release_factory, tmp_path):
    rel = release_factory("iap-client", values={"gcpLoadBalancer": {"enabled": True}})
    rel.install()
    proxy, seen = iap_stand_in(rel.port, rel.service_host())
    try:
        uri = f"http://127.0.0.1:{proxy.server_address[1]}"
        result = run_client(CLIENT, uri, tmp_path / "with-token",
                            env={"MLFLOW_TRACKING_TOKEN": TOKEN})
        assert result["artifact"] == "weights"
        assert seen and all(ok for _, _, ok in seen), seen
        assert any("/mlflow-artifacts/" in path and method == "PUT"
                   for method, path, _ in seen), seen

        # The control: without the token the stand-in refuses, and the client fails.
        before = len(seen)
        with pytest.raises(AssertionError) as failed:
            run_client(CLIENT, uri, tmp_path / "without-token", timeout=120)
        assert "401" in str(failed.value), str(failed.value)[-1500:]
        assert not any(ok for _, _, ok in seen[before:])
    finally:
        proxy.shutdown()
    # Only the run with the token reached MLflow.
    assert rel.db_query("SELECT count(*) FROM runs")[0][0] == 1
