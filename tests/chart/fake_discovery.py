"""A loopback stand-in for the Kubernetes API's version and discovery endpoints.

Helm 3 cannot print NOTES.txt without a cluster: `helm template` never renders it, and
`helm install --dry-run=client` still asks the API server for its version and for the REST
mapping of every kind in the manifest. This server answers exactly those read-only discovery
calls (and 404 for anything else), so `helm install --dry-run=client` renders the release,
NOTES included, with nothing installed. Helm 4's client dry run needs no server at all; both
are pointed here so the two versions are driven the same way.
"""

from __future__ import annotations

import functools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

# group/version -> [(resource, kind, namespaced)] for every kind the chart can render.
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("serviceaccounts", "ServiceAccount", True),
        ("secrets", "Secret", True),
        ("configmaps", "ConfigMap", True),
        ("persistentvolumeclaims", "PersistentVolumeClaim", True),
        ("services", "Service", True),
        ("pods", "Pod", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "batch/v1": [("jobs", "Job", True)],
    "networking.k8s.io/v1": [
        ("networkpolicies", "NetworkPolicy", True),
        ("ingresses", "Ingress", True),
    ],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "gateway.networking.k8s.io/v1": [("httproutes", "HTTPRoute", True)],
    "networking.istio.io/v1": [("virtualservices", "VirtualService", True)],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor", True)],
    "monitoring.googleapis.com/v1": [("podmonitorings", "PodMonitoring", True)],
    "rbac.authorization.k8s.io/v1": [
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
}

VERBS = ["get", "list", "create", "update", "patch", "delete", "watch"]


def _resource_list(group_version: str) -> dict:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind,
             "verbs": VERBS}
            for name, kind, namespaced in RESOURCES[group_version]
        ],
    }


def _group_list(served: set[str]) -> dict:
    groups = []
    for gv in RESOURCES:
        if "/" not in gv or gv not in served:
            continue
        group, version = gv.split("/")
        entry = {"groupVersion": gv, "version": version}
        groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        body: dict | None = None
        objects = getattr(self.server, "objects", {})
        served = self.server.served  # type: ignore[attr-defined]
        self.server.requests.append(path)  # type: ignore[attr-defined]
        if path in objects:
            body = objects[path]
        elif path == "/version":
            body = {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "platform": "linux/amd64"}
        elif path == "/api":
            body = {"kind": "APIVersions", "versions": ["v1"]}
        elif path == "/apis":
            body = _group_list(served)
        elif path == "/api/v1":
            body = _resource_list("v1")
        elif path.startswith("/apis/") and path[len("/apis/"):] in served:
            body = _resource_list(path[len("/apis/"):])
        status = 200 if body is not None else 404
        if body is None:
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                    "reason": "NotFound", "code": 404}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


def object_path(obj: dict) -> str:
    """The API path a GET of this object uses (what Helm's `lookup` asks for)."""
    group_version = obj["apiVersion"]
    resource = next(name for name, kind, _ in RESOURCES[group_version] if kind == obj["kind"])
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    return f"{root}/namespaces/{obj['metadata']['namespace']}/{resource}/{obj['metadata']['name']}"


class FakeDiscovery:
    """Serve discovery on 127.0.0.1 in a thread; `kubeconfig` points a client at it.

    `objects` are served to GETs of their own path, so a chart's `lookup` finds them when Helm
    renders against this server (`helm template --dry-run=server`); anything else is 404, which
    `lookup` turns into an empty result. `requests` lists the paths asked for. `without` names
    group/versions of RESOURCES the cluster does not serve (a CRD not installed).
    """

    def __init__(self, workdir: Path, objects: list[dict] = (), without: tuple[str, ...] = ()
                 ) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.served = set(RESOURCES) - set(without)  # type: ignore[attr-defined]
        self._server.objects = {object_path(o): o for o in objects}  # type: ignore[attr-defined]
        self._server.requests = []  # type: ignore[attr-defined]
        self.requests: list[str] = self._server.requests  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.kubeconfig = workdir / "kubeconfig"
        port = self._server.server_address[1]
        self.kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: fake, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n"
            "contexts: [{name: fake, context: {cluster: fake, user: nobody}}]\n"
            "users: [{name: nobody, user: {}}]\n"
            "current-context: fake\n"
        )

    def __enter__(self) -> FakeDiscovery:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


@functools.cache
def _helm_major(helm: str) -> int:
    import subprocess

    out = subprocess.run([helm, "version", "--short"], capture_output=True, text=True,
                         check=True).stdout
    return int(out.strip().lstrip("v").split(".")[0])


def render_against(helm: str, values: dict | None, objects: list[dict], *,
                   release: str = "prod", namespace: str = "mlops",
                   show_only: tuple[str, ...] = (), workdir: Path,
                   without: tuple[str, ...] = ()) -> list[dict]:
    """Render the chart as an upgrade against a cluster holding `objects`, so `lookup` sees them.

    `helm template --dry-run=server` gives the template engine a REST config (Helm's
    pkg/action/action.go, renderResources: "commands with the flag `--dry-run` with the value
    of ... `server` should try to interact with the cluster"; without it `lookup` is empty), on
    Helm 3 and 4 alike. `--is-upgrade` renders as `helm upgrade` does and skips the install-time
    check that no rendered object exists yet (pkg/action/install.go, existingResourceConflict).
    The cluster's API list (`.Capabilities.APIVersions`) is what discovery serves: RESOURCES
    less the group/versions in `without`.
    Returns the validated objects; a failed render raises RenderError with Helm's stderr.
    """
    import subprocess

    import yaml

    from .render import CHART_DIR, RenderError, validate_object

    with FakeDiscovery(workdir, objects, without) as fake:
        cmd = [helm, "template", release, str(CHART_DIR), "--namespace", namespace,
               "--values", "-", "--dry-run=server", "--is-upgrade",
               "--disable-openapi-validation", "--kubeconfig", str(fake.kubeconfig)]
        if _helm_major(helm) == 3:
            # Helm 3's template is client-only, with the built-in API list, unless --validate
            # (cmd/helm/template.go: `client.ClientOnly = !validate`); install and upgrade ask
            # the cluster. Helm 4 asks the cluster under --dry-run=server (and refuses both).
            cmd.append("--validate")
        for template in show_only:
            cmd += ["--show-only", template]
        proc = subprocess.run(cmd, input=json.dumps(values or {}), capture_output=True,
                              text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise RenderError(proc.stderr, proc.returncode)
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]
    for obj in rendered:
        validate_object(obj)
    return rendered
