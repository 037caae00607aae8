"""The Kubernetes API, for what the CLI does itself: version, namespace, Secrets, markers.

Follows Helm, so that our calls and Helm's reach the same cluster as the same user:
--kube-context / HELM_KUBECONTEXT when given, else the kubeconfig's current context;
--kubeconfig, else KUBECONFIG (several files separated by ':' are merged, as client-go
merges them for Helm), else ~/.kube/config; and Helm's connection settings, which Helm
hands a plugin as HELM_KUBEAPISERVER, HELM_KUBETOKEN, HELM_KUBECAFILE, HELM_KUBEASUSER,
HELM_KUBEASGROUPS, HELM_KUBEINSECURE_SKIP_TLS_VERIFY and HELM_KUBETLS_SERVER_NAME (Helm's
pkg/cli EnvSettings, the same names on both majors), applied over the kubeconfig as
Helm applies its flags. Inner `helm` calls read the same variables themselves. Everything
else in the cluster is Helm's.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from typing import Any
from urllib.parse import quote

from . import apilog, interrupt
from .errors import UserError
from .retry import RetryPolicy, retrying

MANAGED_BY = {"app.kubernetes.io/managed-by": "mlflow-helm"}
# Helm's connection settings as it exports them to plugins (HELM_KUBE<NAME>).
HELM_KUBE = ("APISERVER", "TOKEN", "CAFILE", "ASUSER", "ASGROUPS", "INSECURE_SKIP_TLS_VERIFY",
             "TLS_SERVER_NAME")
REQUEST_TIMEOUT = 30  # seconds per call; retries are ours


def _object_path(namespace: str, kind: str, name: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace)}/{kind}/{quote(name)}"


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status", None)


def _transient(exc: BaseException) -> bool:
    return _status(exc) in (429, 500, 502, 503, 504)


class Kube:
    def __init__(self, context: str = "", kubeconfig: str = "",
                 retry: RetryPolicy | None = None) -> None:
        self.context = context
        self.kubeconfig = kubeconfig
        self.retry = retry or RetryPolicy()
        self._api: Any = None
        self._lock = threading.Lock()

    def current_context(self) -> str:
        """The context in use: the one asked for, else the kubeconfig's current one."""
        if self.context:
            return self.context
        from kubernetes import config

        try:
            _, active = config.list_kube_config_contexts(config_file=self.config_file)
        except Exception as exc:
            if os.environ.get("HELM_KUBEAPISERVER"):
                return ""  # an API server without a kubeconfig: no context to read
            raise self._config_error(exc) from exc
        return (active or {}).get("name", "")

    @property
    def client(self) -> Any:
        """The kubeconfig's ApiClient (context, TLS, token and exec-plugin refresh).

        Calls go through it by path (`_request`) rather than through the generated
        CoreV1Api: that module is 4 MB of pydantic models whose import cost about 0.6 s of
        CPU on every command, for the six calls made here.
        """
        with self._lock:
            if self._api is None:
                self._api = self._new_client()
            return self._api

    def _config_error(self, exc: Exception) -> UserError:
        """What is wrong with the kubeconfig, and how to get a cluster."""
        paths = (self.config_file or os.path.expanduser("~/.kube/config")).split(os.pathsep)
        found = [p for p in paths if p and os.path.exists(os.path.expanduser(p))]
        get_one = ("create a local cluster (`kind create cluster` or `minikube start`), or "
                   "fetch a GKE cluster's (`gcloud container clusters get-credentials CLUSTER "
                   "--location LOCATION`), then re-run")
        text = str(exc)
        if not found:
            return UserError(f"no kubeconfig: {', '.join(paths)} does not exist", get_one)
        if "current-context" in text or "No configuration found" in text or \
                "Expected object with name" in text:
            what = (f"context {self.context} is not in" if self.context
                    else "no current context in")
            return UserError(f"{what} the kubeconfig ({', '.join(found)}); it may be empty "
                             "after its cluster was deleted",
                             f"`kubectl config get-contexts`, then `kubectl config use-context "
                             f"NAME` or --kube-context NAME; or {get_one}")
        return UserError(f"cannot load kube context {self.context or '(current)'} from "
                         f"{', '.join(found)}: {text}",
                         "check `kubectl config get-contexts`; pass --kube-context")

    @property
    def config_file(self) -> str | None:
        """--kubeconfig, else KUBECONFIG (read now: the kubernetes package reads it once, at
        import), else None: the package's ~/.kube/config."""
        return self.kubeconfig or os.environ.get("KUBECONFIG") or None

    def _new_client(self) -> Any:
        from kubernetes import client, config

        env = {k: os.environ.get(f"HELM_KUBE{k}", "") for k in HELM_KUBE}
        cfg = client.Configuration()
        try:
            config.load_kube_config(config_file=self.config_file,
                                    context=self.context or None, client_configuration=cfg,
                                    persist_config=False)
        except Exception as exc:
            if not env["APISERVER"]:  # with an API server given, a kubeconfig is optional
                raise self._config_error(exc) from exc
        if env["APISERVER"]:
            cfg.host = env["APISERVER"]
        if env["TOKEN"]:
            # The token replaces the kubeconfig's user, exec plugin included (client-go
            # BearerToken wins over the other credentials, as with `helm --kube-token`).
            cfg.api_key = {"authorization": f"Bearer {env['TOKEN']}"}
            cfg.api_key_prefix = {}
            cfg.refresh_api_key_hook = None
            cfg.cert_file = cfg.key_file = None
        if env["CAFILE"]:
            cfg.ssl_ca_cert = env["CAFILE"]
        if env["INSECURE_SKIP_TLS_VERIFY"].lower() == "true":
            cfg.verify_ssl = False
        if env["TLS_SERVER_NAME"]:
            cfg.tls_server_name = env["TLS_SERVER_NAME"]
        api = client.ApiClient(configuration=cfg)
        if env["ASUSER"]:
            api.set_default_header("Impersonate-User", env["ASUSER"])
        groups = [g for g in env["ASGROUPS"].split(",") if g]
        if len(groups) > 1:
            raise UserError(f"HELM_KUBEASGROUPS={env['ASGROUPS']}: impersonating more than "
                            "one group is not supported here", "impersonate one group")
        if groups:
            api.set_default_header("Impersonate-Group", groups[0])
        return api

    def _request(self, method: str, path: str, body: dict | None = None,
                 query: list[tuple[str, str]] | None = None) -> dict:
        """One API call as the generated clients make it: JSON, the kubeconfig's
        credentials; a status outside 2xx raises kubernetes' ApiException (with `.status`)."""
        from kubernetes.client.exceptions import ApiException

        interrupt.check()  # after a signal, no new request leaves (cleanup's do)
        api = self.client
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = api.param_serialize(method=method, resource_path=path, header_params=headers,
                                      query_params=query or None, body=body,
                                      auth_settings=["BearerToken"])
        start, status = time.monotonic(), "error"
        try:
            response = api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
            status = response.status
            data = response.read()
        finally:
            apilog.call("kube", method, request[1], status, time.monotonic() - start)
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else {}

    def _call(self, fn, what: str):
        self.client  # noqa: B018 - a kubeconfig error is a UserError, not retried
        try:
            return retrying(fn, _transient, self.retry, what)
        except UserError:
            raise
        except Exception as exc:
            if _status(exc) is None and not hasattr(exc, "status"):
                raise self._unreachable(exc, what) from exc
            if _status(exc) == 403:
                raise UserError(f"Kubernetes denied {what}: {getattr(exc, 'reason', exc)}",
                                "you need rights to manage namespaces, Secrets, ConfigMaps, "
                                "Leases, ServiceAccounts and Jobs (and to read pod logs) "
                                "there") from exc
            raise

    def _unreachable(self, exc: BaseException, what: str) -> UserError:
        """The API server did not answer: where it was looked for, and the likely causes."""
        host = getattr(getattr(self._api, "configuration", None), "host", "") or "?"
        reason = str(exc)
        for cause in ("Connection refused", "timed out", "Name or service not known",
                      "No route to host", "certificate verify failed"):
            if cause.lower() in reason.lower():
                reason = cause
                break
        return UserError(f"cannot reach the Kubernetes API at {host} ({reason}) for {what}",
                         "is the cluster running? `kubectl cluster-info` shows what the "
                         "context points at; a stopped kind cluster starts with "
                         "`docker start kind-control-plane`, minikube with `minikube start`")

    def server_version(self) -> tuple[int, int, str]:
        info = self._call(lambda: self._request("GET", "/version"), "GET /version")
        minor = "".join(ch for ch in info.get("minor", "") if ch.isdigit())
        major = "".join(ch for ch in info.get("major", "") if ch.isdigit())
        return int(major or 0), int(minor or 0), info.get("gitVersion", "")

    def _unless_absent(self, fn, what: str) -> tuple[bool, Any]:
        """(True, fn's result), or (False, None) when the object does not exist (404)."""
        try:
            return True, self._call(fn, what)
        except Exception as exc:
            if _status(exc) == 404:
                return False, None
            raise

    def _put(self, namespace: str, kind: str, name: str, body: dict) -> None:
        """Create the object, or replace it when it exists (409)."""
        what = f"{kind[:-1]} {namespace}/{name}"
        try:
            self._call(lambda: self._request(
                "POST", f"/api/v1/namespaces/{quote(namespace)}/{kind}", body), f"create {what}")
        except Exception as exc:
            if _status(exc) != 409:
                raise
            self._call(lambda: self._request("PUT", _object_path(namespace, kind, name), body),
                       f"replace {what}")

    def get_namespace(self, name: str) -> dict | None:
        found, ns = self._unless_absent(
            lambda: self._request("GET", f"/api/v1/namespaces/{quote(name)}"),
            f"read namespace {name}")
        if not found:
            return None
        meta = ns.get("metadata") or {}
        return {"name": meta.get("name", name), "labels": meta.get("labels") or {}}

    def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": name, "labels": dict(MANAGED_BY)}}
        try:
            self._call(lambda: self._request("POST", "/api/v1/namespaces", body),
                       f"create namespace {name}")
        except Exception as exc:
            if _status(exc) != 409:
                raise

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None when absent."""
        found, secret = self._unless_absent(
            lambda: self._request("GET", _object_path(namespace, "secrets", name)),
            f"read secret {namespace}/{name}")
        if not found:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def put_secret(self, namespace: str, name: str, data: dict[str, str],
                   labels: dict[str, str] | None = None) -> None:
        """Create the Secret, or replace its data when it exists."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": encoded,
                "metadata": {"name": name, "labels": {**MANAGED_BY, **(labels or {})}}}
        self._put(namespace, "secrets", name, body)

    def delete_secret(self, namespace: str, name: str) -> bool:
        return self.delete_object(namespace, "secrets", name)

    def get_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        found, cm = self._unless_absent(
            lambda: self._request("GET", _object_path(namespace, "configmaps", name)),
            f"read configmap {namespace}/{name}")
        if not found:
            return None
        return dict(cm.get("data") or {})

    def put_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "data": data,
                "metadata": {"name": name, "labels": dict(MANAGED_BY)}}
        self._put(namespace, "configmaps", name, body)

    def delete_configmap(self, namespace: str, name: str) -> bool:
        return self.delete_object(namespace, "configmaps", name)

    def list_labelled(self, namespace: str, kind: str, selector: str) -> list[dict]:
        """Objects of `kind` (secrets, persistentvolumeclaims, ...) whose labels match an
        equality selector `a=b,c=d`, as {name, labels, annotations}."""
        found = self._call(lambda: self._request(
            "GET", f"/api/v1/namespaces/{quote(namespace)}/{kind}",
            query=[("labelSelector", selector)]), f"list {kind} in {namespace}")
        out = []
        for item in found.get("items") or []:
            meta = item.get("metadata") or {}
            out.append({"name": meta.get("name", ""), "labels": meta.get("labels") or {},
                        "annotations": meta.get("annotations") or {}})
        return out

    def delete_object(self, namespace: str, kind: str, name: str) -> bool:
        """Delete one namespaced core object; False when it was not there."""
        found, _ = self._unless_absent(
            lambda: self._request("DELETE", _object_path(namespace, kind, name)),
            f"delete {kind[:-1]} {namespace}/{name}")
        return found

    # The one-time grant (dbgrant.py): its ServiceAccount, Job and the Job's pod logs ------
    def get_service_account(self, namespace: str, name: str) -> dict | None:
        found, sa = self._unless_absent(
            lambda: self._request("GET", _object_path(namespace, "serviceaccounts", name)),
            f"read serviceaccount {namespace}/{name}")
        return sa if found else None

    def create_service_account(self, namespace: str, body: dict) -> None:
        """Create it; one that exists (created meanwhile) is left as it is."""
        try:
            self._call(lambda: self._request(
                "POST", f"/api/v1/namespaces/{quote(namespace)}/serviceaccounts", body),
                f"create serviceaccount {namespace}/{body['metadata']['name']}")
        except Exception as exc:
            if _status(exc) != 409:
                raise

    @staticmethod
    def _jobs(namespace: str) -> str:
        return f"/apis/batch/v1/namespaces/{quote(namespace)}/jobs"

    def create_job(self, namespace: str, body: dict) -> bool:
        """Create the Job; False when one of that name exists already."""
        try:
            self._call(lambda: self._request("POST", self._jobs(namespace), body),
                       f"create job {namespace}/{body['metadata']['name']}")
            return True
        except Exception as exc:
            if _status(exc) == 409:
                return False
            raise

    def list_jobs(self, namespace: str, selector: str) -> list[str]:
        """Names of the Jobs whose labels match `selector`, newest first."""
        found = self._call(lambda: self._request(
            "GET", self._jobs(namespace), query=[("labelSelector", selector)]),
            f"list jobs in {namespace}")
        items = sorted(found.get("items") or [], reverse=True,
                       key=lambda j: (j.get("metadata") or {}).get("creationTimestamp", ""))
        return [(j.get("metadata") or {}).get("name", "") for j in items]

    def get_job(self, namespace: str, name: str) -> dict | None:
        found, job = self._unless_absent(
            lambda: self._request("GET", f"{self._jobs(namespace)}/{quote(name)}"),
            f"read job {namespace}/{name}")
        return job if found else None

    def delete_job(self, namespace: str, name: str) -> bool:
        """Delete the Job and, in the background, its pods (a Job deleted with the default
        `orphan` policy of batch/v1 clients would leave them behind)."""
        found, _ = self._unless_absent(
            lambda: self._request("DELETE", f"{self._jobs(namespace)}/{quote(name)}",
                                  {"kind": "DeleteOptions", "apiVersion": "v1",
                                   "propagationPolicy": "Background"}),
            f"delete job {namespace}/{name}")
        return found

    def job_logs(self, namespace: str, job: str, container: str, lines: int = 30) -> str:
        """The last lines of `container` in the Job's newest pod ("" when there is none)."""
        pods = self._job_pods(namespace, job)
        return self._pod_log(namespace, pods[0]["metadata"]["name"], container, lines) \
            if pods else ""

    def failed_container(self, namespace: str, job: str, lines: int = 30) -> tuple[str, str] | None:
        """(container, last log lines) of the newest pod of the Job with a container that
        exited non-zero: init containers first, as they ran (core/v1 PodStatus
        initContainerStatuses, containerStatuses: state.terminated.exitCode); None when no
        container of it failed."""
        for pod in self._job_pods(namespace, job):
            status = pod.get("status") or {}
            for container in [*(status.get("initContainerStatuses") or []),
                              *(status.get("containerStatuses") or [])]:
                ended = ((container.get("state") or {}).get("terminated")
                         or (container.get("lastState") or {}).get("terminated") or {})
                if ended.get("exitCode", 0) != 0:
                    return container["name"], self._pod_log(
                        namespace, pod["metadata"]["name"], container["name"], lines)
        return None

    def _job_pods(self, namespace: str, job: str) -> list[dict]:
        """The Job's pods, newest first: the Job controller labels each with
        batch.kubernetes.io/job-name."""
        pods = self._call(lambda: self._request(
            "GET", f"/api/v1/namespaces/{quote(namespace)}/pods",
            query=[("labelSelector", f"batch.kubernetes.io/job-name={job}")]),
            f"list the pods of job {namespace}/{job}").get("items") or []
        return sorted(pods, reverse=True,
                      key=lambda p: (p.get("metadata") or {}).get("creationTimestamp", ""))

    def _pod_log(self, namespace: str, pod: str, container: str, lines: int) -> str:
        try:
            return self._call(lambda: self._request_text(
                f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(pod)}/log",
                [("container", container), ("tailLines", str(lines))]),
                f"read the log of pod {namespace}/{pod}")
        except Exception as exc:
            return f"(no log: {getattr(exc, 'reason', exc)})"

    def _request_text(self, path: str, query: list[tuple[str, str]]) -> str:
        from kubernetes.client.exceptions import ApiException

        interrupt.check()
        api = self.client
        request = api.param_serialize(method="GET", resource_path=path,
                                      header_params={"Accept": "text/plain"},
                                      query_params=query, auth_settings=["BearerToken"])
        start, status = time.monotonic(), "error"
        try:
            response = api.call_api(*request, _request_timeout=REQUEST_TIMEOUT)
            status = response.status
            data = response.read()
        finally:
            apilog.call("kube", "GET", request[1], status, time.monotonic() - start)
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return data.decode(errors="replace")

    # Leases (the run's lock, lock.py) ---------------------------------------------------
    def _lease_call(self, method: str, path: str, body: dict | None, what: str
                    ) -> tuple[int, dict]:
        """(status, object): 404 and 409 are answers here, not errors."""
        try:
            return 200, self._call(lambda: self._request(method, path, body), what)
        except Exception as exc:
            if _status(exc) in (404, 409):
                return _status(exc), {}
            raise

    @staticmethod
    def _leases(namespace: str) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace)}/leases"

    def create_lease(self, namespace: str, body: dict) -> tuple[int, dict]:
        return self._lease_call("POST", self._leases(namespace), body,
                                f"create lease {namespace}/{body['metadata']['name']}")

    def get_lease(self, namespace: str, name: str) -> dict | None:
        status, obj = self._lease_call("GET", f"{self._leases(namespace)}/{quote(name)}",
                                       None, f"read lease {namespace}/{name}")
        return obj if status == 200 else None

    def replace_lease(self, namespace: str, name: str, body: dict) -> tuple[int, dict]:
        """PUT with the resourceVersion in body.metadata: 409 when it is stale."""
        return self._lease_call("PUT", f"{self._leases(namespace)}/{quote(name)}", body,
                                f"replace lease {namespace}/{name}")

    def delete_lease(self, namespace: str, name: str, resource_version: str) -> int:
        body = {"kind": "DeleteOptions", "apiVersion": "v1",
                "preconditions": {"resourceVersion": resource_version}}
        status, _ = self._lease_call("DELETE", f"{self._leases(namespace)}/{quote(name)}",
                                     body, f"delete lease {namespace}/{name}")
        return status
