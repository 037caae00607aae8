"""A fake Kubernetes API over HTTP, for what the CLI does itself (and Helm's reads).

Serves /version, namespaces, Secrets, ConfigMaps and PersistentVolumeClaims (get, list with
an equality labelSelector, create, replace, delete, 409 AlreadyExists, 404 NotFound as
Status objects), plus enough discovery for Helm to look up a release in its Secret storage.
Logs calls with read/mutating classification.

ServiceAccounts (core/v1) and batch/v1 Jobs (get, list by labelSelector, create, delete),
for the one-time grant Job the CLI runs (src/mlflow_helm/dbgrant.py) and the migration Job
rollback reads (`add_finished_job`). No kubelet runs here: `job_runner(job, fake) -> (ok, log)`
stands in for the Job controller and its pod. It is called once per created Job, in a thread;
its outcome becomes the Job's status as batch/v1 reports it (a condition of type Complete or
Failed with status "True", `succeeded`/`failed` counts: JobStatus,
https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/job-v1/) and its log
the pod's (`GET .../pods/NAME/log`, text/plain). A pod is listed under the label the Job
controller sets, `batch.kubernetes.io/job-name`. As the API server's ServiceAccount admission
would, a Job whose serviceAccountName does not exist gets no pod: here it fails, with the
admission error as its log. DELETE with propagationPolicy Background removes the Job and its
pods at once (the garbage collector's work). The default runner succeeds at once.

PersistentVolumeClaims follow the core/v1 API
(https://kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/persistent-volume-claim-v1/):
`DELETE /api/v1/namespaces/NS/persistentvolumeclaims/NAME` answers 200 with the object. The
real claim lingers with a deletionTimestamp while the `kubernetes.io/pvc-protection`
finalizer waits for pods that mount it; here no pod runs (Helm is a recorder), so it goes
at once. Nothing creates claims by itself: tests add the ones the StatefulSet controller
and Helm would make (`add_claim`).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

from .google import Call
from .http import serve_json, url_of

NS_PATH = re.compile(r"^/api/v1/namespaces(/(?P<ns>[^/]+))?$")
OBJ_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/"
                      r"(?P<kind>secrets|configmaps|persistentvolumeclaims|serviceaccounts)"
                      r"(/(?P<name>[^/]+))?$")
LEASE_PATH = re.compile(r"^/apis/coordination.k8s.io/v1/namespaces/(?P<ns>[^/]+)/leases"
                        r"(/(?P<name>[^/]+))?$")
KINDS = {"secrets": "Secret", "configmaps": "ConfigMap",
         "persistentvolumeclaims": "PersistentVolumeClaim", "serviceaccounts": "ServiceAccount"}
JOB_PATH = re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs(/(?P<name>[^/]+))?$")
POD_PATH = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(/(?P<name>[^/]+)/log)?$")
JOB_LABEL = "batch.kubernetes.io/job-name"


def _key(method: str, path: str, body: dict) -> str:
    """The resource a call touches: `ns/NS`, `ns/NS/secrets/NAME`; a create names it in the
    body."""
    if method == "POST":
        path = f"{path}/{(body.get('metadata') or {}).get('name', '')}"
    match = OBJ_PATH.match(path)
    if match:
        return "/".join(x for x in ("ns", match["ns"], match["kind"], match["name"]) if x)
    match = NS_PATH.match(path)
    if match:
        return f"ns/{match['ns']}" if match["ns"] else "ns"
    match = LEASE_PATH.match(path)
    if match:
        return f"ns/{match['ns']}/leases/{match['name'] or ''}"
    match = JOB_PATH.match(path)
    if match:
        return f"ns/{match['ns']}/jobs/{match['name'] or ''}"
    return path.strip("/") or "/"


def _bearer(headers) -> str:
    value = (headers or {}).get("Authorization", "") or ""
    return value.removeprefix("Bearer ") if value.startswith("Bearer ") else ""


def is_lock(call) -> bool:
    """A call on the run's lock (a Lease, src/mlflow_helm/lock.py): every install and
    uninstall takes and gives back its Lease, which changes nothing of the release."""
    return "/leases/" in call.key


def _status(code: int, reason: str, message: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeKube:
    def __init__(self, version: tuple[str, str] = ("1", "31")) -> None:
        self.version = version
        self.namespaces: dict[str, dict] = {"default": {"metadata": {"name": "default"}}}
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[Call] = []
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self._rv = 1
        self.jobs: dict[tuple[str, str], dict] = {}
        self.pods: dict[tuple[str, str], dict] = {}  # (ns, name) -> {"job", "log", "meta"}
        self.jobs_created: list[dict] = []  # every Job as it was created
        self.job_runner = lambda job, fake: (True, "")
        self._threads: list[threading.Thread] = []

    def serve(self, tls=None) -> str:
        """Serve over HTTP, or HTTPS with `tls` (an ssl.SSLContext): client-go sends a
        bearer token only over TLS (clientcmd applies the user's credentials to TLS
        transports only), so a test of who the caller is needs HTTPS."""
        self.server = serve_json(self.handle, headers=True, tls=tls)
        return url_of(self.server)

    def close(self) -> None:
        for thread in self._threads:
            thread.join(timeout=60)
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def mutating_calls(self) -> list[Call]:
        """Mutating calls, without the lock's (see is_lock; lock_calls() has those)."""
        return [c for c in self.calls if c.mutating and not is_lock(c)]

    def lock_calls(self) -> list[Call]:
        return [c for c in self.calls if is_lock(c)]

    def handle(self, method: str, raw_path: str, raw: bytes, headers=None):
        url = urlsplit(raw_path)
        path = url.path.rstrip("/") or "/"
        selector = parse_qs(url.query).get("labelSelector", [""])[0]
        if POD_PATH.match(path) or JOB_PATH.match(path):
            return self._batch(method, path, json.loads(raw) if raw else {}, selector, headers)
        start = time.monotonic()
        body = json.loads(raw) if raw else {}
        with self.lock:
            status, obj, op = self._route(method, path, body, selector)
            self.calls.append(Call("kube", op, method, path, status,
                                   method not in ("GET", "HEAD"), start, time.monotonic(),
                                   _key(method, path, body),
                                   agent=(headers or {}).get("User-Agent", ""),
                                   auth=_bearer(headers)))
            return status, obj

    def _meta(self, obj: dict) -> dict:
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        return obj

    def _route(self, method, path, body, selector=""):
        if path == "/version":
            major, minor = self.version
            return 200, {"major": major, "minor": minor,
                         "gitVersion": f"v{major}.{minor}.2-gke.1000",
                         "gitCommit": "0" * 40, "gitTreeState": "clean",
                         "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                         "compiler": "gc", "platform": "linux/amd64"}, "version"
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"]}, "discovery"
        if path == "/apis":
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}, "discovery"
        match = NS_PATH.match(path)
        if match:
            ns = match["ns"]
            if method == "GET" and ns is None:
                return 200, {"kind": "NamespaceList", "apiVersion": "v1",
                             "items": list(self.namespaces.values())}, "namespaces.list"
            if method == "GET":
                if ns not in self.namespaces:
                    return 404, _status(404, "NotFound", f'namespaces "{ns}" not found'), \
                        "namespaces.get"
                return 200, self.namespaces[ns], "namespaces.get"
            if method == "POST":
                name = body["metadata"]["name"]
                if name in self.namespaces:
                    return 409, _status(409, "AlreadyExists",
                                        f'namespaces "{name}" already exists'), \
                        "namespaces.create"
                self.namespaces[name] = self._meta({**body, "kind": "Namespace",
                                                    "apiVersion": "v1"})
                return 201, self.namespaces[name], "namespaces.create"
        match = LEASE_PATH.match(path)
        if match:
            return self._lease(method, match["ns"], match["name"], body)
        match = OBJ_PATH.match(path)
        if match:
            ns, kind, name = match["ns"], match["kind"], match["name"]
            op = f"{kind}.{method.lower()}"
            key = (kind, ns, name)
            if method == "GET" and name is None:
                # Equality selectors (what Helm's release storage uses: owner=helm,name=X).
                wanted = dict(p.split("=", 1) for p in selector.split(",") if "=" in p)
                items = [o for (k, n, _), o in self.objects.items() if k == kind and n == ns
                         and all((o["metadata"].get("labels") or {}).get(a) == b
                                 for a, b in wanted.items())]
                return 200, {"kind": f"{KINDS[kind]}List", "apiVersion": "v1",
                             "metadata": {"resourceVersion": str(self._rv)},
                             "items": items}, f"{kind}.list"
            if method == "GET":
                if key not in self.objects:
                    return 404, _status(404, "NotFound", f'{kind} "{name}" not found'), op
                return 200, self.objects[key], op
            if method == "POST":
                if ns not in self.namespaces:
                    return 404, _status(404, "NotFound", f'namespaces "{ns}" not found'), op
                key = (kind, ns, body["metadata"]["name"])
                if key in self.objects:
                    return 409, _status(409, "AlreadyExists",
                                        f'{kind} "{key[2]}" already exists'), op
                body["metadata"]["namespace"] = ns
                self.objects[key] = self._meta({**body, "kind": KINDS[kind],
                                                "apiVersion": "v1"})
                return 201, self.objects[key], op
            if method == "PUT":
                if key not in self.objects:
                    return 404, _status(404, "NotFound", f'{kind} "{name}" not found'), op
                body["metadata"]["namespace"] = ns
                self.objects[key] = self._meta({**body, "kind": KINDS[kind],
                                                "apiVersion": "v1"})
                return 200, self.objects[key], op
            if method == "DELETE":
                if key not in self.objects:
                    return 404, _status(404, "NotFound", f'{kind} "{name}" not found'), op
                gone = self.objects.pop(key)
                if kind == "persistentvolumeclaims":
                    return 200, gone, op  # the API answers a claim's DELETE with the claim
                return 200, _status(200, "", "deleted") | {"status": "Success"}, op
        return 404, _status(404, "NotFound", f"no route {method} {path}"), "unknown"

    # -- Jobs and their pods ------------------------------------------------------------
    def _batch(self, method, path, body, selector, headers):
        start = time.monotonic()
        with self.lock:
            status, obj, op = self._jobs(method, path, body, selector)
            self.calls.append(Call("kube", op, method, path, status,
                                   method not in ("GET", "HEAD"), start, time.monotonic(),
                                   _key(method, path, body),
                                   agent=(headers or {}).get("User-Agent", ""),
                                   auth=_bearer(headers)))
        return status, obj

    def _jobs(self, method, path, body, selector):
        match = POD_PATH.match(path)
        if match:
            ns, name = match["ns"], match["name"]
            if name:
                pod = self.pods.get((ns, name))
                if pod is None:
                    return 404, _status(404, "NotFound", f'pods "{name}" not found'), "pods.log"
                return 200, pod["log"].encode(), "pods.log"
            wanted = dict(p.split("=", 1) for p in selector.split(",") if "=" in p)
            items = [p["meta"] for (n, _), p in self.pods.items() if n == ns and
                     all(p["meta"]["metadata"]["labels"].get(a) == b for a, b in wanted.items())]
            return 200, {"kind": "PodList", "apiVersion": "v1", "items": items}, "pods.list"
        match = JOB_PATH.match(path)
        ns, name = match["ns"], match["name"]
        if method == "POST":
            name = body["metadata"]["name"]
            if ns not in self.namespaces:
                return 404, _status(404, "NotFound", f'namespaces "{ns}" not found'), \
                    "jobs.create"
            if (ns, name) in self.jobs:
                return 409, _status(409, "AlreadyExists",
                                    f'jobs.batch "{name}" already exists'), "jobs.create"
            job = self._meta({**copy.deepcopy(body), "status": {}})
            job["metadata"]["namespace"] = ns
            self.jobs[(ns, name)] = job
            self.jobs_created.append(copy.deepcopy(job))
            thread = threading.Thread(target=self._run_job, args=(ns, name, copy.deepcopy(job)),
                                      daemon=True)
            self._threads.append(thread)
            thread.start()
            return 201, job, "jobs.create"
        if method == "GET" and not name:
            wanted = dict(p.split("=", 1) for p in selector.split(",") if "=" in p)
            items = [copy.deepcopy(j) for (n, _), j in self.jobs.items() if n == ns and all(
                (j["metadata"].get("labels") or {}).get(a) == b for a, b in wanted.items())]
            return 200, {"kind": "JobList", "apiVersion": "batch/v1", "items": items}, \
                "jobs.list"
        job = self.jobs.get((ns, name))
        if job is None:
            return 404, _status(404, "NotFound", f'jobs.batch "{name}" not found'), \
                f"jobs.{method.lower()}"
        if method == "GET":
            return 200, copy.deepcopy(job), "jobs.get"
        if method == "DELETE":
            del self.jobs[(ns, name)]
            if (body or {}).get("propagationPolicy") in ("Background", "Foreground"):
                for key in [k for k, p in self.pods.items() if p["job"] == (ns, name)]:
                    del self.pods[key]
            return 200, _status(200, "", "deleted") | {"status": "Success"}, "jobs.delete"
        return 405, _status(405, "MethodNotAllowed", method), "jobs.other"

    def _run_job(self, ns: str, name: str, job: dict) -> None:
        spec = job["spec"]["template"]["spec"]
        account = spec.get("serviceAccountName", "default")
        if account != "default" and ("serviceaccounts", ns, account) not in self.objects:
            ok, log, pod = False, (f'pods "{name}-" is forbidden: error looking up service '
                                   f'account {ns}/{account}: serviceaccount "{account}" not '
                                   "found"), False
        else:
            pod = True
            try:
                ok, log = self.job_runner(job, self)
            except Exception as exc:  # a runner's own failure is the pod's
                ok, log = False, f"runner failed: {exc!r}"
        with self.lock:
            if pod:
                pod_name = f"{name}-x7k2p"
                self.pods[(ns, pod_name)] = {"job": (ns, name), "log": log, "meta": {
                    "metadata": {"name": pod_name, "namespace": ns,
                                 "creationTimestamp": "2026-01-01T00:00:00Z",
                                 "labels": {JOB_LABEL: name, "job-name": name}},
                    "status": pod_status(spec, ok)}}
            current = self.jobs.get((ns, name))
            if current is None:  # deleted while it ran
                return
            kind = "Complete" if ok else "Failed"
            current["status"] = {
                "succeeded" if ok else "failed": 1,
                "conditions": [{"type": kind, "status": "True",
                                "reason": "" if ok else "BackoffLimitExceeded"}]}
            self._meta(current)

    def _lease(self, method: str, ns: str, name: str | None, body: dict):
        """coordination.k8s.io/v1 Leases with the API server's optimistic concurrency
        (https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions): a
        PUT whose metadata.resourceVersion is not the current one gets 409 Conflict with
        the apiserver's OptimisticLockErrorMsg (k8s.io/apiserver
        pkg/registry/generic/registry/store.go), and so does a DELETE whose
        preconditions.resourceVersion is stale: k8s.io/apiserver pkg/storage/interfaces.go
        Preconditions.Check returns "Precondition failed: ResourceVersion in precondition:
        %v, ResourceVersion in object meta: %v" as an InvalidObjError, which
        pkg/storage/errors/storage.go InterpretDeleteError turns into errors.NewConflict (409,
        "Operation cannot be fulfilled on <resource> \"<name>\": <that message>")."""
        op = f"leases.{method.lower()}"
        key = ("leases", ns, name or (body.get("metadata") or {}).get("name", ""))
        resource = f'leases.coordination.k8s.io "{key[2]}"'

        def store() -> dict:
            self.objects[key] = self._meta({**body, "kind": "Lease",
                                            "apiVersion": "coordination.k8s.io/v1"})
            return copy.deepcopy(self.objects[key])

        def conflict(why: str):
            return 409, _status(409, "Conflict",
                                f"Operation cannot be fulfilled on {resource}: {why}"), op

        if method == "POST":
            if ns not in self.namespaces:
                return 404, _status(404, "NotFound", f'namespaces "{ns}" not found'), op
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f"{resource} already exists"), op
            body.setdefault("metadata", {})["namespace"] = ns
            return 201, store(), op
        if key not in self.objects:
            return 404, _status(404, "NotFound", f"{resource} not found"), op
        current = self.objects[key]["metadata"]["resourceVersion"]
        if method == "GET":
            return 200, copy.deepcopy(self.objects[key]), op
        if method == "PUT":
            sent = (body.get("metadata") or {}).get("resourceVersion")
            if sent and sent != current:
                return conflict("the object has been modified; please apply your changes "
                                "to the latest version and try again")
            return 200, store(), op
        if method == "DELETE":
            sent = (body.get("preconditions") or {}).get("resourceVersion")
            if sent and sent != current:
                return conflict(f"Precondition failed: ResourceVersion in precondition: "
                                f"{sent}, ResourceVersion in object meta: {current}")
            del self.objects[key]
            return 200, _status(200, "", "deleted") | {"status": "Success"}, op
        return 405, _status(405, "MethodNotAllowed", method), op

    def add_finished_job(self, ns: str, name: str, labels: dict, log: str) -> None:
        """A Job Helm created (a release's migration Job) that ran to completion, with its
        pod and that pod's log, as the Job controller and kubelet leave them."""
        with self.lock:
            self.jobs[(ns, name)] = self._meta({
                "apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": name, "namespace": ns, "labels": labels,
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {}, "status": {"succeeded": 1, "conditions": [
                    {"type": "Complete", "status": "True"}]}})
            pod_name = f"{name}-x7k2p"
            self.pods[(ns, pod_name)] = {"job": (ns, name), "log": log, "meta": {
                "metadata": {"name": pod_name, "namespace": ns,
                             "creationTimestamp": "2026-01-01T00:00:00Z",
                             "labels": {JOB_LABEL: name, "job-name": name}},
                "status": {"phase": "Succeeded"}}}

    def lease(self, ns: str, name: str) -> dict | None:
        obj = self.objects.get(("leases", ns, name))
        return copy.deepcopy(obj) if obj else None

    def add_claim(self, ns: str, name: str, labels: dict, annotations: dict | None = None,
                  size: str = "8Gi") -> None:
        """A PersistentVolumeClaim as the StatefulSet controller (volumeClaimTemplates) or
        Helm (the artifacts claim) creates it."""
        with self.lock:
            self.namespaces.setdefault(ns, {"metadata": {"name": ns}})
            self.objects[("persistentvolumeclaims", ns, name)] = self._meta({
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": name, "namespace": ns, "labels": dict(labels),
                             "annotations": dict(annotations or {}),
                             "finalizers": ["kubernetes.io/pvc-protection"]},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": size}}},
                "status": {"phase": "Bound"}})

    def add_secret(self, ns: str, name: str, data: dict[str, str], labels: dict,
                   annotations: dict | None = None) -> None:
        """A Secret as Helm creates it from the chart (kept on uninstall by
        helm.sh/resource-policy: keep)."""
        import base64

        with self.lock:
            self.namespaces.setdefault(ns, {"metadata": {"name": ns}})
            self.objects[("secrets", ns, name)] = self._meta({
                "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": ns, "labels": dict(labels),
                             "annotations": dict(annotations or {})},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})

    def secret(self, ns: str, name: str) -> dict | None:
        obj = self.objects.get(("secrets", ns, name))
        return copy.deepcopy(obj) if obj else None


def pod_status(spec: dict, ok: bool) -> dict:
    """A finished pod's status (core/v1 PodStatus): phase, and each container terminated; when
    it failed, the last container exited 1 (a runner's log is that container's)."""
    containers = [c["name"] for c in spec.get("containers") or []]
    inits = [c["name"] for c in spec.get("initContainers") or []
             if c.get("restartPolicy") != "Always"]

    def ended(name: str, code: int) -> dict:
        return {"name": name, "state": {"terminated": {
            "exitCode": code, "reason": "Completed" if code == 0 else "Error"}}}

    return {"phase": "Succeeded" if ok else "Failed",
            "initContainerStatuses": [ended(n, 0) for n in inits],
            "containerStatuses": [ended(n, 0 if ok or i < len(containers) - 1 else 1)
                                  for i, n in enumerate(containers)]}


def write_kubeconfig(path: Path, server: str, context: str, namespace: str = "") -> Path:
    ctx = {"cluster": "fake", "user": "fake"}
    if namespace:
        ctx["namespace"] = namespace
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {"token": "fake-token"}}],
        "contexts": [{"name": context, "context": ctx}],
    }))
    return path
