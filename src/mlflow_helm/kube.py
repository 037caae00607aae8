"""The Kubernetes API, for what the CLI does itself: version, namespace, Secrets, markers.

Follows Helm: --kube-context / HELM_KUBECONTEXT when given, else the kubeconfig's current
context; KUBECONFIG or --kubeconfig for the file. Everything else in the cluster is Helm's.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from .errors import UserError
from .retry import RetryPolicy, retrying

MANAGED_BY = {"app.kubernetes.io/managed-by": "mlflow-helm"}


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
            _, active = config.list_kube_config_contexts(config_file=self.kubeconfig or None)
        except Exception as exc:
            raise UserError(f"cannot read the kubeconfig: {exc}",
                            "set KUBECONFIG or run `gcloud container clusters "
                            "get-credentials CLUSTER`") from exc
        return (active or {}).get("name", "")

    @property
    def client(self) -> Any:
        with self._lock:
            if self._api is None:
                from kubernetes import client, config

                try:
                    api = config.new_client_from_config(
                        config_file=self.kubeconfig or None, context=self.context or None)
                except Exception as exc:
                    raise UserError(
                        f"cannot load kube context {self.context or '(current)'}: {exc}",
                        "check `kubectl config get-contexts`; pass --kube-context") from exc
                self._api = client
                self._core = client.CoreV1Api(api)
                self._version = client.VersionApi(api)
            return self._api

    def _call(self, fn, what: str):
        self.client  # noqa: B018 - builds the API objects
        try:
            return retrying(fn, _transient, self.retry, what)
        except UserError:
            raise
        except Exception as exc:
            if _status(exc) is None and not hasattr(exc, "status"):
                raise UserError(f"cannot reach the Kubernetes API ({what}): {exc}",
                                "check the kube context (`kubectl cluster-info`)") from exc
            if _status(exc) == 403:
                raise UserError(f"Kubernetes denied {what}: {getattr(exc, 'reason', exc)}",
                                "you need rights to manage namespaces and Secrets") from exc
            raise

    def server_version(self) -> tuple[int, int, str]:
        info = self._call(lambda: self._version.get_code(), "GET /version")
        minor = "".join(ch for ch in info.minor if ch.isdigit())
        return int(info.major), int(minor or 0), info.git_version

    def _unless_absent(self, fn, what: str) -> tuple[bool, Any]:
        """(True, fn's result), or (False, None) when the object does not exist (404)."""
        try:
            return True, self._call(fn, what)
        except Exception as exc:
            if _status(exc) == 404:
                return False, None
            raise

    def _create_or_replace(self, create, replace, what: str) -> None:
        """Create the object, or replace it when it exists (409)."""
        try:
            self._call(create, f"create {what}")
        except Exception as exc:
            if _status(exc) != 409:
                raise
            self._call(replace, f"replace {what}")

    def get_namespace(self, name: str) -> dict | None:
        found, ns = self._unless_absent(lambda: self._core.read_namespace(name),
                                        f"read namespace {name}")
        if not found:
            return None
        return {"name": ns.metadata.name, "labels": ns.metadata.labels or {}}

    def create_namespace(self, name: str) -> None:
        body = self.client.V1Namespace(metadata=self.client.V1ObjectMeta(
            name=name, labels=dict(MANAGED_BY)))
        try:
            self._call(lambda: self._core.create_namespace(body), f"create namespace {name}")
        except Exception as exc:
            if _status(exc) != 409:
                raise

    def get_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """The Secret's data, decoded; None when absent."""
        found, secret = self._unless_absent(
            lambda: self._core.read_namespaced_secret(name, namespace),
            f"read secret {namespace}/{name}")
        if not found:
            return None
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def put_secret(self, namespace: str, name: str, data: dict[str, str],
                   labels: dict[str, str] | None = None) -> None:
        """Create the Secret, or replace its data when it exists."""
        encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
        body = self.client.V1Secret(
            metadata=self.client.V1ObjectMeta(name=name, labels={**MANAGED_BY,
                                                                 **(labels or {})}),
            type="Opaque", data=encoded)
        self._create_or_replace(
            lambda: self._core.create_namespaced_secret(namespace, body),
            lambda: self._core.replace_namespaced_secret(name, namespace, body),
            f"secret {namespace}/{name}")

    def delete_secret(self, namespace: str, name: str) -> bool:
        found, _ = self._unless_absent(
            lambda: self._core.delete_namespaced_secret(name, namespace),
            f"delete secret {namespace}/{name}")
        return found

    def get_configmap(self, namespace: str, name: str) -> dict[str, str] | None:
        found, cm = self._unless_absent(
            lambda: self._core.read_namespaced_config_map(name, namespace),
            f"read configmap {namespace}/{name}")
        if not found:
            return None
        return dict(cm.data or {})

    def put_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = self.client.V1ConfigMap(
            metadata=self.client.V1ObjectMeta(name=name, labels=dict(MANAGED_BY)), data=data)
        self._create_or_replace(
            lambda: self._core.create_namespaced_config_map(namespace, body),
            lambda: self._core.replace_namespaced_config_map(name, namespace, body),
            f"configmap {namespace}/{name}")

    def delete_configmap(self, namespace: str, name: str) -> bool:
        found, _ = self._unless_absent(
            lambda: self._core.delete_namespaced_config_map(name, namespace),
            f"delete configmap {namespace}/{name}")
        return found
