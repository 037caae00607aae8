"""Thin adapters over the Google APIs we call, and the one place they are built.

`GoogleApis` owns the credentials, the endpoints and the retry policy. Production uses
Application Default Credentials and Google's endpoints; tests build it with the address of
the local fakes (or set MLFLOW_HELM_GOOGLE_API_BASE), so the same code runs over real HTTP.
Google libraries are imported lazily: `mlflow-helm --help` must stay fast.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .. import apilog, interrupt
from ..errors import CloudError, PermissionDenied, UserError
from ..retry import RetryPolicy, retrying

# The permission each call needs and a predefined role that grants it, for 403 messages.
PERMISSIONS: dict[str, tuple[str, str]] = {
    "projects.get": ("resourcemanager.projects.get", "roles/browser"),
    "projects.getIamPolicy": ("resourcemanager.projects.getIamPolicy",
                              "roles/iam.securityReviewer"),
    "projects.setIamPolicy": ("resourcemanager.projects.setIamPolicy",
                              "roles/resourcemanager.projectIamAdmin"),
    "serviceAccounts.get": ("iam.serviceAccounts.get", "roles/iam.serviceAccountViewer"),
    "serviceAccounts.create": ("iam.serviceAccounts.create", "roles/iam.serviceAccountCreator"),
    "serviceAccounts.delete": ("iam.serviceAccounts.delete", "roles/iam.serviceAccountAdmin"),
    "serviceAccounts.getIamPolicy": ("iam.serviceAccounts.getIamPolicy",
                                     "roles/iam.serviceAccountAdmin"),
    "serviceAccounts.setIamPolicy": ("iam.serviceAccounts.setIamPolicy",
                                     "roles/iam.serviceAccountAdmin"),
    "instances.get": ("cloudsql.instances.get", "roles/cloudsql.viewer"),
    "instances.patch": ("cloudsql.instances.update", "roles/cloudsql.admin"),
    "databases.get": ("cloudsql.databases.get", "roles/cloudsql.viewer"),
    "databases.insert": ("cloudsql.databases.create", "roles/cloudsql.admin"),
    "databases.delete": ("cloudsql.databases.delete", "roles/cloudsql.admin"),
    "users.list": ("cloudsql.users.list", "roles/cloudsql.viewer"),
    "users.insert": ("cloudsql.users.create", "roles/cloudsql.admin"),
    "users.update": ("cloudsql.users.update", "roles/cloudsql.admin"),
    "users.delete": ("cloudsql.users.delete", "roles/cloudsql.admin"),
    "operations.get": ("cloudsql.instances.get", "roles/cloudsql.viewer"),
    "clusters.get": ("container.clusters.get", "roles/container.clusterViewer"),
    "buckets.get": ("storage.buckets.get", "roles/storage.admin"),
    "buckets.create": ("storage.buckets.create", "roles/storage.admin"),
    "buckets.delete": ("storage.buckets.delete", "roles/storage.admin"),
    "buckets.getIamPolicy": ("storage.buckets.getIamPolicy", "roles/storage.admin"),
    "objects.list": ("storage.objects.list", "roles/storage.objectViewer"),
    "objects.delete": ("storage.objects.delete", "roles/storage.objectAdmin"),
    "buckets.setIamPolicy": ("storage.buckets.setIamPolicy", "roles/storage.admin"),
    "services.batchGet": ("serviceusage.services.get", "roles/serviceusage.serviceUsageViewer"),
}

TRANSIENT = {429, 500, 502, 503, 504}
API_VERSIONS = {"sqladmin": "v1", "iam": "v1", "cloudresourcemanager": "v1", "container": "v1",
                "serviceusage": "v1"}


_DOCS: dict[str, str] = {}
_DOCS_LOCK = threading.Lock()


def _discovery_doc(api: str) -> str:
    """The discovery document shipped with google-api-python-client (no network)."""
    with _DOCS_LOCK:
        if api not in _DOCS:
            from googleapiclient.discovery_cache import get_static_doc

            doc = get_static_doc(api, API_VERSIONS[api])
            if doc is None:
                raise RuntimeError(f"no static discovery document for {api}")
            _DOCS[api] = doc
        return _DOCS[api]


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a googleapiclient or google-api-core error, else None."""
    resp = getattr(exc, "resp", None)
    if resp is not None and getattr(resp, "status", None) is not None:
        return int(resp.status)
    code = getattr(exc, "code", None)
    return int(code) if isinstance(code, int) else None


def error_body(exc: BaseException) -> dict:
    """The `error` object of a Google JSON error response ({} when there is none)."""
    import json

    try:
        content = getattr(exc, "content", b"")
        body = json.loads(content.decode() if isinstance(content, bytes) else content)
        return body.get("error", {}) if isinstance(body, dict) else {}
    except Exception:
        return {}


def error_reason(exc: BaseException) -> str:
    """The message Google put in the error body, for humans."""
    return error_body(exc).get("message", "") or getattr(exc, "message", "") or str(exc)


def error_info(exc: BaseException) -> dict:
    """The google.rpc.ErrorInfo detail of an error ({} when there is none): its `reason`
    (e.g. SERVICE_DISABLED) and `metadata` say why, where the HTTP status alone cannot."""
    for detail in error_body(exc).get("details") or []:
        if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
            return detail
    return {}


def is_transient(exc: BaseException) -> bool:
    if http_status(exc) in TRANSIENT:
        return True
    # Connection resets and timeouts are transient too.
    return isinstance(exc, (ConnectionError, TimeoutError))


def denied(exc: BaseException, operation: str, resource: str, project: str = "",
           project_number: str = "") -> UserError:
    """What a 403 means. Google answers 403 for several different things; each gets its own
    message and fix:
    - an API not enabled (ErrorInfo reason SERVICE_DISABLED) in the project the call names,
      or in another project (the credentials' quota project, which pays for the call);
    - Resource Manager's projects.get for a project that does not exist or that the caller
      cannot see (the two are one answer there, by design);
    - a missing permission: the role that grants it.
    """
    info = error_info(exc)
    if info.get("reason") == "SERVICE_DISABLED":
        meta = info.get("metadata") or {}
        service = meta.get("service", "the API")
        consumer = meta.get("consumer", "").removeprefix("projects/")
        title = meta.get("serviceTitle") or service
        # The consumer is a project number; until preflight has read the project's number,
        # a disabled API is taken to be the project's own.
        if project_number and consumer and consumer not in (project, project_number):
            return UserError(
                f"{title} ({service}) is not enabled in project {consumer}, which your "
                f"credentials bill the call to (their quota project), while {operation} "
                f"{resource} runs in {project}",
                f"enable it there (gcloud services enable {service} --project {consumer}), "
                f"or bill the project itself: gcloud auth application-default "
                f"set-quota-project {project}")
        target = project or consumer
        return UserError(f"{title} ({service}) is not enabled in project {target}",
                         f"gcloud services enable {service} --project {target}, wait a "
                         "minute, then re-run")
    if info.get("reason") == "USER_PROJECT_DENIED":
        return UserError(f"your credentials' quota project may not be used for {operation} "
                         f"{resource} ({error_reason(exc)})",
                         "gcloud auth application-default set-quota-project PROJECT (one in "
                         "which you have serviceusage.services.use)")
    if operation == "projects.get":
        return UserError(f"project {resource} does not exist, or you cannot see it "
                         f"({error_reason(exc)})",
                         "check --project (the project ID, not its name); if it is right, ask "
                         "its owner for roles/browser")
    permission, role = PERMISSIONS.get(operation, ("(unknown)", "roles/owner"))
    return PermissionDenied(
        f"permission denied: {permission} on {resource} ({error_reason(exc)})",
        f"ask a project owner to grant you {role} (it contains {permission}), "
        f"e.g. gcloud projects add-iam-policy-binding PROJECT --member=user:YOU --role={role}",
    )


@dataclass
class GoogleApis:
    """Builds the Google API clients; one instance per command, shared by the steps."""

    base_url: str = ""  # e.g. http://127.0.0.1:PORT: every API at BASE/<api>/
    storage_url: str = ""  # e.g. http://127.0.0.1:PORT for fake-gcs-server (+ bucket IAM)
    credentials: Any = None
    project: str = ""
    project_number: str = ""  # once preflight has read it: tells a quota project's 403 apart
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Where long waits report their elapsed time (the CLI prints to stderr).
    progress: Any = None
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_environment(cls, retry: RetryPolicy | None = None) -> GoogleApis:
        """ADC in production; MLFLOW_HELM_GOOGLE_API_BASE points every API at a local fake."""
        base = os.environ.get("MLFLOW_HELM_GOOGLE_API_BASE", "")
        storage = os.environ.get("STORAGE_EMULATOR_HOST", "")
        apis = cls(base_url=base, storage_url=storage, retry=retry or RetryPolicy())
        if os.environ.get("MLFLOW_HELM_RETRY_BASE"):
            base_delay = float(os.environ["MLFLOW_HELM_RETRY_BASE"])
            apis.retry = RetryPolicy(base=base_delay, poll_interval=base_delay,
                                     consistency_timeout=max(1.0, 100 * base_delay))
        return apis

    def authenticate(self) -> tuple[Any, str]:
        """Credentials and their project; a missing login is a user error with the fix."""
        with self._lock:
            if self.credentials is not None:
                return self.credentials, self.project
            if self.base_url:
                from google.auth.credentials import AnonymousCredentials

                self.credentials = AnonymousCredentials()
                self.project = os.environ.get("MLFLOW_HELM_ADC_PROJECT", "")
                return self.credentials, self.project
            import google.auth
            from google.auth.exceptions import DefaultCredentialsError

            try:
                creds, project = google.auth.default(
                    scopes=["https://www.googleapis.com/auth/cloud-platform"]
                )
            except DefaultCredentialsError as exc:
                raise UserError(
                    "no Google credentials found (Application Default Credentials)",
                    "run `gcloud auth application-default login`, or set "
                    "GOOGLE_APPLICATION_CREDENTIALS; use --local for a cluster without "
                    "Google Cloud",
                ) from exc
            self.credentials, self.project = creds, project or ""
            return self.credentials, self.project

    def service(self, api: str) -> Any:
        """A discovery client for `api`, one per thread (httplib2 is not thread-safe)."""
        cache = self._local.__dict__.setdefault("services", {})
        if api not in cache:
            from googleapiclient.discovery import build_from_document

            creds, _ = self.authenticate()
            options = {"api_endpoint": f"{self.base_url}/{api}/"} if self.base_url else None
            cache[api] = build_from_document(_discovery_doc(api), credentials=creds,
                                             client_options=options)
        return cache[api]

    def storage(self) -> Any:
        cache = self._local.__dict__
        if "storage" not in cache:
            # google-cloud-storage 3.17 reads a bucket's metadata in a background thread
            # before other calls on it, to label its tracing spans: a read nobody asked for,
            # on every command (a re-run must make one read per resource). Off unless the user
            # sets it.
            os.environ.setdefault("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")
            from google.cloud import storage

            creds, _ = self.authenticate()
            options = {"api_endpoint": self.storage_url} if self.storage_url else None
            client = storage.Client(project=self.project or "unused", credentials=creds,
                                    client_options=options)
            # --debug's API log (apilog.py): the client's requests session reports each call.
            client._http.hooks["response"].append(apilog.requests_hook("storage"))
            cache["storage"] = client
        return cache["storage"]

    def say(self, message: str) -> None:
        if self.progress:
            self.progress(message)

    def execute(self, request: Any, operation: str, resource: str) -> Any:
        """Run one API request: retry 429/5xx with backoff, turn 403 into the role to grant."""

        def once() -> Any:
            interrupt.check()  # after a signal, no new request leaves (cleanup's do)
            start, status = time.monotonic(), "error"
            try:
                body = request.execute(num_retries=0)
                status = 200
                return body
            except Exception as exc:
                status = http_status(exc) or type(exc).__name__
                raise
            finally:
                apilog.call(_api_of(request.uri), request.method, request.uri, status,
                            time.monotonic() - start)

        try:
            return retrying(once, is_transient, self.retry, f"{operation} {resource}")
        except Exception as exc:
            status = http_status(exc)
            if status == 403:
                raise denied(exc, operation, resource, self.project,
                             self.project_number) from exc
            if status == 401:
                raise UserError(f"Google rejected the credentials ({error_reason(exc)})",
                                "run `gcloud auth application-default login` again") from exc
            raise


def _api_of(uri: str) -> str:
    """sqladmin for https://sqladmin.googleapis.com/v1/... (or BASE/sqladmin/v1/... of a fake)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.hostname and parts.hostname.endswith(".googleapis.com"):
        return parts.hostname.split(".", 1)[0]
    return parts.path.lstrip("/").split("/", 1)[0]


def not_found(exc: BaseException) -> bool:
    return http_status(exc) == 404


def conflict(exc: BaseException) -> bool:
    return http_status(exc) in (409, 412)


__all__ = ["CloudError", "GoogleApis", "conflict", "http_status", "not_found"]
