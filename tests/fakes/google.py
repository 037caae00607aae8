"""A stateful fake of the Google APIs the CLI calls, over real HTTP.

sqladmin v1, iam v1, cloudresourcemanager v1, container v1 and serviceusage v1, each under
its own path prefix (`http://127.0.0.1:PORT/<api>/…`), answering what googleapiclient sends.
Fidelity, where the emulators on PyPI fall short:
- Every request is first checked against the discovery document of the API version
  (tests/fakes/discovery.py): a method the document lacks is 404; an undeclared query
  parameter, a missing required one, an unknown body field, a wrong type or enum value is
  400 INVALID_ARGUMENT with a google.rpc.BadRequest, as the real front end answers.
  Rejected requests are kept in `rejected`; the CLI tests require it to stay empty.
- A project that does not exist is 403 PERMISSION_DENIED, as Resource Manager answers for
  a project the caller cannot see (discovery, cloudresourcemanager v1 projects.get).
- An API not enabled in the project (`disable`) is 403 with ErrorInfo SERVICE_DISABLED,
  its activation URL and consumer; services.batchGet reports it DISABLED.
- MySQL users.update/delete need `host` (discovery, sqladmin v1 User.host: "For a MySQL
  instance, it's required"); the instance's passwordValidationPolicy is enforced on
  users.insert and users.update (the 400's wording is ours: no source gives it verbatim).
- flags.list with `requiresRestart` per flag (discovery, sqladmin v1 Flag).
- IAM policies carry an etag; a setIamPolicy with a stale etag gets 409 ABORTED (IAM and
  Resource Manager do this); `requestedPolicyVersion` is echoed into `version`.
- Cloud SQL mutations return operations that go PENDING → RUNNING → DONE over time (the
  effect lands at DONE); a second mutation on a busy instance gets 409 (operation in
  progress); an operation can be made to end DONE with an error.
- Creating what exists: 409 ALREADY_EXISTS.
- A PostgreSQL user that owns objects in a database that still exists cannot be deleted:
  users.delete answers 400 at once, with PostgreSQL's DROP ROLE error inside Cloud SQL's
  ("Invalid request: failed to delete user U: . role "U" cannot be dropped because some
  objects depend on it Details: N objects in database D.", as reported from the API in
  kernelci/kcidb#407 and terraform-google-modules/terraform-google-sql-db#323). Dropping the
  database drops its objects (and the user's privileges on it), so database first, then
  user, succeeds. Tests say which user owns objects where (`own`: MLflow's migrations ran
  as that user).
- New service accounts are invisible for `sa_delay` seconds (404 on get/getIamPolicy, 400
  "does not exist" when bound in a project policy): IAM's eventual consistency.
- Injectable failures (429/503/403…) per operation, or "every call fails once".
- A call log with each call's operation, whether it is a read or a mutation, when it was
  received and answered, and the resource it touched (`key`, a path like
  `sql/PROJECT/INSTANCE/databases/NAME`), for the install benchmark's critical path.
- Injectable latency per call (`latency`), slept before the call is handled and outside the
  lock, so concurrent calls overlap as they do against Google.
Not modelled: conditions evaluation, quotas, LROs of IAM/CRM (they are synchronous there too).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from . import discovery
from .http import serve_json, url_of

READ_OPS = {"get", "list", "getIamPolicy", "batchGet"}
SERVICE_TITLES = {"sqladmin.googleapis.com": "Cloud SQL Admin API",
                  "iam.googleapis.com": "Identity and Access Management (IAM) API",
                  "cloudresourcemanager.googleapis.com": "Cloud Resource Manager API",
                  "container.googleapis.com": "Kubernetes Engine API",
                  "storage.googleapis.com": "Cloud Storage API",
                  "serviceusage.googleapis.com": "Service Usage API"}


class Denied(Exception):
    """A handler's 403 PERMISSION_DENIED (the permission, the resource)."""

    def body(self) -> dict:
        permission, resource = self.args
        return _error(403, f"Permission '{permission}' denied on resource '{resource}' (or it "
                           "may not exist).", "PERMISSION_DENIED", reason="forbidden")


@dataclass
class Call:
    api: str
    op: str
    method: str
    path: str
    status: int
    mutating: bool
    start: float = 0.0  # time.monotonic() when the request arrived
    end: float = 0.0  # when it was answered
    key: str = ""  # the resource: a path whose parents are the resources it lives in
    refs: tuple[str, ...] = ()  # other resources it needs to exist (members of a policy)
    operation: str = ""  # Cloud SQL: the operation it started, or polled
    done: bool = False  # operations.get: the operation was DONE
    instance: str = ""  # Cloud SQL: the instance whose one-at-a-time operation queue it joins
    agent: str = ""  # the client's User-Agent (the Kubernetes fake tells Helm from us)
    auth: str = ""  # the Kubernetes fake: the Authorization header's bearer token, if any


@dataclass
class Fault:
    status: int
    times: int = 1
    message: str = ""


def take_fault(faults: dict[str, list[Fault]], op: str) -> Fault | None:
    """The next injected fault for `op`, used up one time (the fakes share this queue rule)."""
    queue = faults.get(op) or []
    if not queue:
        return None
    fault = queue[0]
    fault.times -= 1
    if fault.times <= 0:
        queue.pop(0)
    return fault


def _etag(n: int) -> str:
    return base64.b64encode(f"etag-{n}".encode()).decode()


@dataclass
class State:
    projects: dict = field(default_factory=dict)  # pid -> {number, policy, policy_n}
    accounts: dict = field(default_factory=dict)  # email -> {sa, policy, n, visible_at}
    instances: dict = field(default_factory=dict)  # (pid, name) -> instance dict
    databases: dict = field(default_factory=dict)  # (pid, inst) -> {name: db}
    users: dict = field(default_factory=dict)  # (pid, inst) -> {(name, host): user}
    operations: dict = field(default_factory=dict)  # name -> op (+ private fields)
    backups: dict = field(default_factory=dict)  # (pid, inst) -> {id: backupRun}
    clusters: dict = field(default_factory=dict)  # (pid, loc, name) -> cluster
    owned: dict = field(default_factory=dict)  # (pid, inst) -> {user: {database: objects}}
    disabled: set = field(default_factory=set)  # (pid, "sqladmin.googleapis.com")


class FakeGoogle:
    """The fake's state and behaviour; `serve()` puts it on a loopback port."""

    def __init__(self, op_seconds: float = 0.05, sa_delay: float = 0.0,
                 latency: float = 0.0) -> None:
        self.state = State()
        self.lock = threading.RLock()
        self.calls: list[Call] = []
        self.faults: dict[str, list[Fault]] = {}
        self.fail_every_call_once = False
        self._seen: set[tuple[str, str, str]] = set()
        self.op_seconds = op_seconds
        self.sa_delay = sa_delay
        self.latency = latency
        self.op_errors: dict[str, str] = {}  # op name prefix -> error message at DONE
        self.hooks: list[Callable[[str, dict], None]] = []  # (op, body) before handling
        # What flags.list answers (a test may mark a flag as restarting the instance).
        self.flags = copy.deepcopy(FLAGS)
        # The credentials' quota project, when one is modelled (see _disabled).
        self.quota_project: str | None = None
        # Every request is checked against the discovery document first (discovery.py);
        # what it rejected, for tests to assert on.
        self.validate = True
        self.rejected: list[tuple[str, str]] = []
        self._op_n = 0
        self.server: ThreadingHTTPServer | None = None

    # -- setup helpers ------------------------------------------------------------------
    def add_project(self, pid: str, number: str = "123456789012", owners=("user:owner@x.com",)):
        self.state.projects[pid] = {
            "number": number, "n": 1,
            "policy": {"version": 1, "bindings": [{"role": "roles/owner",
                                                   "members": list(owners)}]},
        }

    def add_cluster(self, pid: str, location: str, name: str, pool: str | None = None,
                    metadata_mode: str = "GKE_METADATA"):
        cluster = {"name": name, "location": location, "nodePools": [
            {"name": "default-pool", "config": {"workloadMetadataConfig": {
                "mode": metadata_mode}}}]}
        if pool is not False:
            cluster["workloadIdentityConfig"] = {"workloadPool": pool or f"{pid}.svc.id.goog"}
        self.state.clusters[(pid, location, name)] = cluster

    def add_instance(self, pid: str, name: str, region: str = "europe-west1",
                     version: str = "POSTGRES_16", ip_types=("PRIMARY",),
                     state: str = "RUNNABLE", flags: dict | None = None, binlog=False,
                     tier: str = "db-custom-2-7680"):
        self.state.instances[(pid, name)] = {
            "kind": "sql#instance", "name": name, "project": pid, "region": region,
            "databaseVersion": version, "state": state,
            "connectionName": f"{pid}:{region}:{name}",
            "ipAddresses": [{"type": t, "ipAddress": "10.0.0.3"} for t in ip_types],
            "settings": {"settingsVersion": "1", "tier": tier,
                         "databaseFlags": [{"name": k, "value": v}
                                           for k, v in (flags or {}).items()],
                         "backupConfiguration": {"binaryLogEnabled": binlog},
                         "ipConfiguration": {}},
        }
        builtin = "postgres" if version.startswith("POSTGRES") else "root"
        self.state.databases[(pid, name)] = {
            "postgres" if builtin == "postgres" else "mysql": {"name": builtin}}
        host = "" if builtin == "postgres" else "%"  # Cloud SQL's root is root@%
        self.state.users[(pid, name)] = {(builtin, host): {"name": builtin, "host": host,
                                                           "type": "BUILT_IN"}}

    def own(self, pid: str, instance: str, user: str, database: str, objects: int = 42) -> None:
        """`user` owns `objects` tables, sequences... in `database` (MLflow's migrations ran
        as it)."""
        with self.lock:
            self.state.owned.setdefault((pid, instance), {}).setdefault(user, {})[
                database] = objects

    def inject(self, op: str, status: int, times: int = 1, message: str = "") -> None:
        """The next `times` calls of `op` (e.g. "iam.serviceAccounts.create") fail."""
        self.faults.setdefault(op, []).append(Fault(status, times, message))

    # -- views for tests -----------------------------------------------------------------
    def mutating_calls(self) -> list[Call]:
        return [c for c in self.calls if c.mutating and c.status < 400]

    def counts(self) -> dict[str, int]:
        return {"read": sum(1 for c in self.calls if not c.mutating),
                "mutating": sum(1 for c in self.calls if c.mutating)}

    def snapshot(self) -> dict:
        """Comparable state: what a clean run and a crashed-then-resumed run must share."""
        with self.lock:
            self._tick()
            s = self.state

            def pol(p):
                return sorted((b["role"], tuple(sorted(b["members"])))
                              for b in p.get("bindings", []))

            return {
                "project_policies": {k: pol(v["policy"]) for k, v in s.projects.items()},
                "accounts": {k: pol(v["policy"]) for k, v in s.accounts.items()},
                "databases": {f"{k[0]}:{k[1]}": sorted(v) for k, v in s.databases.items()},
                "users": {f"{k[0]}:{k[1]}": sorted((u["name"], u.get("type", ""))
                                                   for u in v.values())
                          for k, v in s.users.items()},
                "flags": {f"{k[0]}:{k[1]}": sorted((f["name"], f["value"]) for f in
                                                   v["settings"]["databaseFlags"])
                          for k, v in s.instances.items()},
            }

    # -- serving -------------------------------------------------------------------------
    def serve(self) -> str:
        def handle(method: str, path: str, raw: bytes):
            return self.handle(method, path, json.loads(raw) if raw else {})

        self.server = serve_json(handle, "application/json; charset=UTF-8")
        return url_of(self.server)

    def close(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    # -- dispatch ------------------------------------------------------------------------
    ROUTES: ClassVar[list[tuple[str, str, str, str]]] = [
        # (api, method, path regex, op)
        ("cloudresourcemanager", "GET", r"v1/projects/(?P<p>[^/:]+)", "projects.get"),
        ("cloudresourcemanager", "POST", r"v1/projects/(?P<p>[^/:]+):getIamPolicy",
         "projects.getIamPolicy"),
        ("cloudresourcemanager", "POST", r"v1/projects/(?P<p>[^/:]+):setIamPolicy",
         "projects.setIamPolicy"),
        ("iam", "POST", r"v1/projects/(?P<p>[^/]+)/serviceAccounts", "serviceAccounts.create"),
        ("iam", "GET", r"v1/projects/(?P<p>[^/]+)/serviceAccounts/(?P<e>[^/:]+)",
         "serviceAccounts.get"),
        ("iam", "DELETE", r"v1/projects/(?P<p>[^/]+)/serviceAccounts/(?P<e>[^/:]+)",
         "serviceAccounts.delete"),
        ("iam", "POST", r"v1/projects/(?P<p>[^/]+)/serviceAccounts/(?P<e>[^/:]+):getIamPolicy",
         "serviceAccounts.getIamPolicy"),
        ("iam", "POST", r"v1/projects/(?P<p>[^/]+)/serviceAccounts/(?P<e>[^/:]+):setIamPolicy",
         "serviceAccounts.setIamPolicy"),
        ("sqladmin", "GET", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)", "instances.get"),
        ("sqladmin", "PATCH", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)",
         "instances.patch"),
        ("sqladmin", "POST", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/databases",
         "databases.insert"),
        ("sqladmin", "GET",
         r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/databases/(?P<d>[^/]+)",
         "databases.get"),
        ("sqladmin", "DELETE",
         r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/databases/(?P<d>[^/]+)",
         "databases.delete"),
        ("sqladmin", "GET", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/users", "users.list"),
        ("sqladmin", "POST", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/users",
         "users.insert"),
        ("sqladmin", "PUT", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/users",
         "users.update"),
        ("sqladmin", "DELETE", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/users",
         "users.delete"),
        ("sqladmin", "POST", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/backupRuns",
         "backupRuns.insert"),
        ("sqladmin", "GET",
         r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/backupRuns/(?P<b>[^/]+)",
         "backupRuns.get"),
        ("sqladmin", "GET", r"v1/projects/(?P<p>[^/]+)/instances/(?P<i>[^/]+)/backupRuns",
         "backupRuns.list"),
        ("sqladmin", "GET", r"v1/projects/(?P<p>[^/]+)/operations/(?P<o>[^/]+)", "operations.get"),
        ("container", "GET",
         r"v1/projects/(?P<p>[^/]+)/locations/(?P<l>[^/]+)/clusters/(?P<c>[^/]+)",
         "clusters.get"),
        ("sqladmin", "GET", r"v1/flags", "flags.list"),
        ("serviceusage", "GET", r"v1/projects/(?P<p>[^/]+)/services:batchGet",
         "services.batchGet"),
    ]

    def handle(self, method: str, raw_path: str, body: dict) -> tuple[int, Any]:
        url = urlsplit(raw_path)
        multi = parse_qs(url.query, keep_blank_values=True)
        query = {k: v[0] for k, v in multi.items()}
        query["_multi"] = multi
        api, _, rest = url.path.lstrip("/").partition("/")
        if self.validate:
            found, invalid = discovery.check(api, method, rest, multi, body)
            if found is None and api in discovery.VERSIONS:
                return 404, _error(404, f"no method {method} {url.path} in the {api} "
                                        "discovery document", "NOT_FOUND")
            if invalid is not None:
                now = time.monotonic()
                self.calls.append(Call(api, found.id.split(".", 1)[1], method, url.path, 400,
                                       method != "GET", now, now))
                self.rejected.append((found.id, invalid["error"]["message"]))
                return 400, invalid
        for r_api, r_method, pattern, route_op in self.ROUTES:
            if r_api == api and r_method == method:
                match = re.fullmatch(pattern, rest)
                if match:
                    op = route_op
                    break
        else:
            return 404, _error(404, f"no route {method} {url.path}", "NOT_FOUND")
        full_op = f"{api}.{op}"
        mutating = op.rsplit(".", 1)[-1] not in READ_OPS
        start = time.monotonic()
        if self.latency:
            time.sleep(self.latency)
        with self.lock:
            self._tick()
            status, payload = self._disabled(api, match.groupdict().get("p", ""))
            if status is None:
                status, payload = self._fault(full_op, method, url.path)
            if status is None:
                for hook in list(self.hooks):
                    hook(full_op, body)
                try:
                    status, payload = getattr(self, "_" + op.replace(".", "_"))(
                        match.groupdict(), query, body)
                except KeyError as exc:
                    status, payload = 404, _error(404, f"not found: {exc}", "NOT_FOUND")
                except Denied as exc:
                    status, payload = 403, exc.body()
            key, refs, operation, instance = _resource(op, match.groupdict(), query, body)
            call = Call(api, op, method, url.path, status, mutating, start, time.monotonic(),
                        key, refs, operation, instance=instance)
            if isinstance(payload, dict) and payload.get("kind") == "sql#operation":
                call.operation = payload["name"]
                call.done = op == "operations.get" and payload["status"] == "DONE"
            self.calls.append(call)
            return status, payload

    def disable(self, pid: str, service: str) -> None:
        """`service` (e.g. sqladmin.googleapis.com) is not enabled in project `pid`."""
        self.state.disabled.add((pid, service))

    def _disabled(self, api: str, pid: str) -> tuple[int | None, Any]:
        """403 SERVICE_DISABLED for an API not enabled in the project the call names.

        The shape is Google's for every API (https://cloud.google.com/apis/design/errors,
        ErrorInfo; reason SERVICE_DISABLED in https://cloud.google.com/service-usage/docs/
        and google.api.ErrorReason SERVICE_DISABLED in googleapis/api-common-protos
        google/api/error_reason.proto): the message names the API and the activation URL, the
        ErrorInfo carries service, consumer and activationUrl. The consumer is the project the
        request names (the quota project is not modelled: with user credentials and no quota
        project, Google bills the project in the request for these APIs).
        """
        service = f"{api}.googleapis.com"
        # With a quota project on the credentials (x-goog-user-project), that project is the
        # consumer: its services must be enabled, whatever project the call names.
        pid = self.quota_project or pid
        if (pid, service) not in self.state.disabled:
            return None, None
        number = self.state.projects.get(pid, {}).get("number", pid)
        url = (f"https://console.developers.google.com/apis/api/{service}/overview"
               f"?project={number}")
        message = (f"{SERVICE_TITLES.get(service, service)} has not been used in project "
                   f"{number} before or it is disabled. Enable it by visiting {url} then retry. "
                   "If you enabled this API recently, wait a few minutes for the action to "
                   "propagate to our systems and retry.")
        body = _error(403, message, "PERMISSION_DENIED", reason="accessNotConfigured")
        body["error"]["details"] = [{
            "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED",
            "domain": "googleapis.com",
            "metadata": {"service": service, "consumer": f"projects/{number}",
                         "activationUrl": url, "containerInfo": str(number),
                         "serviceTitle": SERVICE_TITLES.get(service, service)}}]
        return 403, body

    def _fault(self, op: str, method: str, path: str) -> tuple[int | None, Any]:
        fault = take_fault(self.faults, op)
        if fault:
            if fault.status == 403:
                perm = fault.message or op
                return 403, _error(403, f"Permission '{perm}' denied on resource (or it may "
                                        "not exist).", "PERMISSION_DENIED")
            return fault.status, _error(fault.status, fault.message or "injected",
                                        "UNAVAILABLE" if fault.status == 503 else
                                        "RESOURCE_EXHAUSTED")
        if self.fail_every_call_once:
            key = (op, method, path)
            if key not in self._seen:
                self._seen.add(key)
                return 503, _error(503, "The service is currently unavailable.",
                                   "UNAVAILABLE")
        return None, None

    # -- operations ----------------------------------------------------------------------
    def _start_op(self, pid: str, inst: str, op_type: str, effect: Callable[[], Any],
                  target: str) -> tuple[int, Any]:
        for op in self.state.operations.values():
            if op["targetId"] == inst and op["targetProject"] == pid and op["status"] != "DONE":
                return 409, _error(409, "Operation failed because another operation was "
                                        "already in progress.", "ABORTED",
                                   reason="operationInProgress")
        self._op_n += 1
        name = f"op-{self._op_n:04d}"
        now = time.monotonic()
        op = {"kind": "sql#operation", "name": name, "operationType": op_type,
              "status": "PENDING", "targetId": inst, "targetProject": pid,
              "targetLink": target, "_start": now, "_effect": effect}
        for prefix, message in list(self.op_errors.items()):
            if op_type.startswith(prefix):
                op["_error"] = message
                del self.op_errors[prefix]
        self.state.operations[name] = op
        return 200, _public(op)

    def _tick(self) -> None:
        now = time.monotonic()
        for op in self.state.operations.values():
            if op["status"] == "DONE":
                continue
            age = now - op["_start"]
            if age >= self.op_seconds:
                op["status"] = "DONE"
                if "_error" in op:
                    op["error"] = {"kind": "sql#operationErrors", "errors": [
                        {"kind": "sql#operationError", "code": "ERROR_RDBMS",
                         "message": op["_error"]}]}
                    if "_failed" in op:
                        op["_failed"]()
                else:
                    op["_effect"]()
            elif age >= self.op_seconds / 3:
                op["status"] = "RUNNING"

    # -- resource manager ----------------------------------------------------------------
    def _project(self, p):
        # Resource Manager answers 403, not 404, for a project that does not exist as for one
        # the caller cannot see: discovery, cloudresourcemanager v1 projects.get ("The caller
        # must have read permissions for this Project") and projects.getIamPolicy
        # ("Permission is denied if the policy or the resource does not exist").
        if p not in self.state.projects:
            raise Denied("resourcemanager.projects.get", f"projects/{p}")
        return self.state.projects[p]

    def _projects_get(self, m, q, b):
        proj = self._project(m["p"])
        return 200, {"projectId": m["p"], "projectNumber": proj["number"],
                     "lifecycleState": "ACTIVE"}

    def _policy_out(self, holder, requested):
        policy = copy.deepcopy(holder["policy"])
        policy["etag"] = _etag(holder["n"])
        has_conditions = any(x.get("condition") for x in policy.get("bindings", []))
        policy["version"] = 3 if (has_conditions and int(requested or 1) >= 3) else \
            policy.get("version", 1)
        return policy

    def _policy_in(self, holder, policy, check_members=True):
        etag = policy.get("etag")
        if etag and etag != _etag(holder["n"]):
            return 409, _error(409, "There were concurrent policy changes. Please retry the "
                                    "whole read-modify-write with exponential backoff.",
                               "ABORTED")
        if check_members:
            for binding in policy.get("bindings", []):
                for member in binding.get("members", []):
                    if member.startswith("serviceAccount:") and "[" not in member:
                        email = member.split(":", 1)[1]
                        acct = self.state.accounts.get(email)
                        if email.endswith(".iam.gserviceaccount.com") and (
                                acct is None or not self._visible(acct)):
                            return 400, _error(400, f"Service account {email} does not exist.",
                                               "INVALID_ARGUMENT")
        new = copy.deepcopy(policy)
        new.pop("etag", None)
        holder["policy"] = new
        holder["n"] += 1
        return 200, self._policy_out(holder, 3)

    def _projects_getIamPolicy(self, m, q, b):
        requested = (b.get("options") or {}).get("requestedPolicyVersion")
        return 200, self._policy_out(self._project(m["p"]), requested)

    def _projects_setIamPolicy(self, m, q, b):
        return self._policy_in(self._project(m["p"]), b.get("policy", {}))

    # -- iam -----------------------------------------------------------------------------
    def _visible(self, acct) -> bool:
        return time.monotonic() >= acct["visible_at"]

    def _account(self, email):
        acct = self.state.accounts.get(email)
        if acct is None or not self._visible(acct):
            raise KeyError(email)
        return acct

    def _serviceAccounts_create(self, m, q, b):
        account_id = b["accountId"]
        email = f"{account_id}@{m['p']}.iam.gserviceaccount.com"
        if email in self.state.accounts:
            return 409, _error(409, f"Service account {account_id} already exists within "
                                    "project.", "ALREADY_EXISTS")
        sa = {"name": f"projects/{m['p']}/serviceAccounts/{email}", "email": email,
              "projectId": m["p"], "uniqueId": str(10**20 + len(self.state.accounts)),
              "displayName": (b.get("serviceAccount") or {}).get("displayName", "")}
        self.state.accounts[email] = {"sa": sa, "policy": {"version": 1}, "n": 1,
                                      "visible_at": time.monotonic() + self.sa_delay}
        return 200, sa

    def _serviceAccounts_get(self, m, q, b):
        return 200, self._account(m["e"])["sa"]

    def _serviceAccounts_delete(self, m, q, b):
        self._account(m["e"])
        del self.state.accounts[m["e"]]
        return 200, {}

    def _serviceAccounts_getIamPolicy(self, m, q, b):
        return 200, self._policy_out(self._account(m["e"]),
                                     q.get("options.requestedPolicyVersion"))

    def _serviceAccounts_setIamPolicy(self, m, q, b):
        return self._policy_in(self._account(m["e"]), b.get("policy", {}), check_members=False)

    # -- container -----------------------------------------------------------------------
    def _clusters_get(self, m, q, b):
        return 200, self.state.clusters[(m["p"], m["l"], m["c"])]

    # -- sqladmin ------------------------------------------------------------------------
    def _inst(self, m):
        return self.state.instances[(m["p"], m["i"])]

    def _instances_get(self, m, q, b):
        return 200, self._inst(m)

    def _instances_patch(self, m, q, b):
        inst = self._inst(m)
        settings = b.get("settings", {})

        def effect():
            if "databaseFlags" in settings:
                inst["settings"]["databaseFlags"] = settings["databaseFlags"]
            inst["settings"]["settingsVersion"] = str(int(inst["settings"]["settingsVersion"])
                                                      + 1)

        return self._start_op(m["p"], m["i"], "UPDATE", effect, m["i"])

    def _databases_insert(self, m, q, b):
        self._inst(m)
        dbs = self.state.databases[(m["p"], m["i"])]
        name = b["name"]
        if name in dbs:
            return 409, _error(409, f"The database {name} already exists.", "ALREADY_EXISTS")
        return self._start_op(m["p"], m["i"], "CREATE_DATABASE",
                              lambda: dbs.setdefault(name, {"name": name, "charset": "UTF8"}),
                              name)

    def _backupRuns_insert(self, m, q, b):
        """An on-demand backup: an operation (BACKUP_VOLUME, the type Cloud SQL's operation
        list shows for `gcloud sql backups create`) whose backupContext names the run; the run
        is RUNNING while it goes, then SUCCESSFUL, or FAILED when the operation ends in error
        (discovery sqladmin v1: backupRuns.insert returns an Operation; Operation.backupContext
        .backupId; BackupRun.status, .type ON_DEMAND)."""
        self._inst(m)
        runs = self.state.backups.setdefault((m["p"], m["i"]), {})
        backup_id = str(1700000000000 + len(runs) + 1)
        run = {"kind": "sql#backupRun", "id": backup_id, "instance": m["i"],
               "status": "RUNNING", "type": "ON_DEMAND",
               "description": b.get("description", ""),
               "enqueuedTime": "2026-12-07T10:00:00.000Z"}
        status, op = self._start_op(m["p"], m["i"], "BACKUP_VOLUME",
                                    lambda: run.update(status="SUCCESSFUL"), m["i"])
        if status != 200:
            return status, op
        runs[backup_id] = run
        context = {"kind": "sql#backupContext", "backupId": backup_id}
        stored = self.state.operations[op["name"]]
        stored["backupContext"] = context
        stored["_failed"] = lambda: run.update(status="FAILED")
        return 200, {**op, "backupContext": context}

    def _backupRuns_get(self, m, q, b):
        self._inst(m)
        run = self.state.backups.get((m["p"], m["i"]), {}).get(m["b"])
        if run is None:
            return 404, _error(404, "The backup run does not exist.", "NOT_FOUND")
        return 200, copy.deepcopy(run)

    def _backupRuns_list(self, m, q, b):
        self._inst(m)
        runs = sorted(self.state.backups.get((m["p"], m["i"]), {}).values(),
                      key=lambda r: r["id"], reverse=True)
        return 200, {"kind": "sql#backupRunsList", "items": copy.deepcopy(runs)}

    def _databases_get(self, m, q, b):
        self._inst(m)
        db = self.state.databases[(m["p"], m["i"])][m["d"]]
        return 200, {"kind": "sql#database", "instance": m["i"], "project": m["p"], **db}

    def _databases_delete(self, m, q, b):
        dbs = self.state.databases[(m["p"], m["i"])]
        dbs[m["d"]]
        owned = self.state.owned.get((m["p"], m["i"]), {})

        def effect():
            dbs.pop(m["d"], None)
            for databases in owned.values():  # its objects go with it
                databases.pop(m["d"], None)

        return self._start_op(m["p"], m["i"], "DELETE_DATABASE", effect, m["d"])

    def _users_list(self, m, q, b):
        self._inst(m)
        users = self.state.users[(m["p"], m["i"])]
        return 200, {"kind": "sql#usersList", "items": [
            {k: v for k, v in u.items() if k != "password"} for u in users.values()]}

    def _user_key(self, name: str, mysql: bool, user_type: str) -> str:
        # Cloud SQL stores a MySQL IAM service account user under the part before "@".
        if mysql and user_type == "CLOUD_IAM_SERVICE_ACCOUNT":
            return name.split("@", 1)[0]
        return name

    def _users_insert(self, m, q, b):
        inst = self._inst(m)
        mysql = inst["databaseVersion"].startswith("MYSQL")
        users = self.state.users[(m["p"], m["i"])]
        user_type = b.get("type", "BUILT_IN")
        name = self._user_key(b["name"], mysql, user_type)
        host = b.get("host", "%" if mysql and user_type == "BUILT_IN" else "")
        if (name, host) in users:
            return 409, _error(409, f"The user {name} already exists.", "ALREADY_EXISTS")
        if user_type == "BUILT_IN":
            refused = _policy_refuses(inst, name, b.get("password") or "")
            if refused:
                return 400, refused
        if user_type == "CLOUD_IAM_SERVICE_ACCOUNT":
            iam_flag = "cloudsql.iam_authentication" if not mysql else \
                "cloudsql_iam_authentication"
            flags = {f["name"]: f["value"] for f in inst["settings"]["databaseFlags"]}
            if flags.get(iam_flag) != "on":
                return 400, _error(400, f"Invalid request: {iam_flag} flag must be on to "
                                        "add IAM users.", "INVALID_ARGUMENT")
        user = {"kind": "sql#user", "name": name, "host": host, "type": user_type,
                "instance": m["i"], "project": m["p"], "password": b.get("password")}
        return self._start_op(m["p"], m["i"], "CREATE_USER",
                              lambda: users.setdefault((name, host), user), name)

    def _mysql_host(self, m, q):
        """MySQL users are (name, host) pairs: discovery, sqladmin v1 User.host "For a MySQL
        instance, it's required; for a PostgreSQL or SQL Server instance, it's optional"."""
        if self._inst(m)["databaseVersion"].startswith("MYSQL") and "host" not in q:
            return 400, _error(400, "Invalid request: host is required for MySQL users.",
                               "INVALID_ARGUMENT", reason="invalid")
        return None

    def _users_update(self, m, q, b):
        users = self.state.users[(m["p"], m["i"])]
        refused = self._mysql_host(m, q) or _policy_refuses(
            self._inst(m), q["name"], b.get("password") or "")
        if refused:
            return refused if isinstance(refused, tuple) else (400, refused)
        key = (q["name"], q.get("host", ""))
        if key not in users:
            key = next(k for k in users if k[0] == q["name"])
        user = users[key]
        return self._start_op(m["p"], m["i"], "UPDATE_USER",
                              lambda: user.update(password=b.get("password")), q["name"])

    def _users_delete(self, m, q, b):
        users = self.state.users[(m["p"], m["i"])]
        refused = self._mysql_host(m, q)
        if refused:
            return refused
        key = (q["name"], q.get("host", ""))
        if key not in users:  # PostgreSQL: the host is optional and ignored
            key = next((k for k in users if k[0] == q["name"]), None)
        if key is None:
            raise KeyError(q["name"])
        inst = self._inst(m)
        owns = self.state.owned.get((m["p"], m["i"]), {}).get(q["name"], {})
        if inst["databaseVersion"].startswith("POSTGRES") and owns:
            details = "\n".join(f"{n} objects in database {db}" for db, n in sorted(owns.items()))
            return 400, _error(400, f"Invalid request: failed to delete user {q['name']}: . "
                                    f'role "{q["name"]}" cannot be dropped because some '
                                    f"objects depend on it Details: {details}.",
                               "INVALID_ARGUMENT", reason="invalid")
        return self._start_op(m["p"], m["i"], "DELETE_USER", lambda: users.pop(key, None),
                              q["name"])

    def _flags_list(self, m, q, b):
        """The flags Cloud SQL offers, with `requiresRestart` (discovery, sqladmin v1 Flag:
        "Indicates whether changing this flag will trigger a database restart"). Values as
        Cloud SQL lists them ("Configure database flags", cloud.google.com/sql/docs/*/flags):
        the IAM authentication flags apply without a restart, MySQL's max_connections and
        PostgreSQL's max_connections need one."""
        version = q.get("databaseVersion", "")
        items = [dict(f, kind="sql#flag", appliesTo=[version] if version else [])
                 for f in self.flags if not version or f["engine"] in version]
        for item in items:
            item.pop("engine")
        return 200, {"kind": "sql#flagsList", "items": items}

    def _services_batchGet(self, m, q, b):
        """Service Usage v1 services.batchGet: each named service with state ENABLED or
        DISABLED (discovery, serviceusage v1 GoogleApiServiceusageV1Service.state)."""
        # The parent is projects/NUMBER in Google's examples; a project ID is accepted too.
        pid = next((p for p, v in self.state.projects.items() if v["number"] == m["p"]), m["p"])
        number = self._project(pid)["number"]
        services = []
        for name in q["_multi"].get("names", []):
            service = name.rsplit("/", 1)[-1]
            services.append({"name": f"projects/{number}/services/{service}",
                             "parent": f"projects/{number}",
                             "state": "DISABLED" if (pid, service) in self.state.disabled
                             else "ENABLED"})
        return 200, {"services": services}

    def _operations_get(self, m, q, b):
        return 200, _public(self.state.operations[m["o"]])


def _resource(op: str, m: dict, q: dict, b: dict) -> tuple[str, tuple[str, ...], str, str]:
    """(key, refs, operation, instance) of a call, from its route's parameters and body."""
    p = m.get("p", "")
    refs: tuple[str, ...] = ()
    if op.endswith("setIamPolicy"):
        refs = tuple(sorted(
            f"sa/{member.split(':', 1)[1]}"
            for binding in (b.get("policy") or {}).get("bindings", [])
            for member in binding.get("members", [])
            if member.startswith("serviceAccount:") and "[" not in member))
    kind = op.split(".")[0]
    if kind == "projects":
        key = f"project/{p}" + ("/policy" if "IamPolicy" in op else "")
    elif kind == "serviceAccounts":
        email = m.get("e") or f"{b.get('accountId')}@{p}.iam.gserviceaccount.com"
        key = f"sa/{email}" + ("/policy" if "IamPolicy" in op else "")
    elif kind == "clusters":
        key = f"cluster/{p}/{m['l']}/{m['c']}"
    elif kind == "flags":
        key = "sqlflags"
    elif kind == "services":
        key = f"project/{p}/services"
    elif kind == "operations":
        return f"sqlop/{m['o']}", refs, m["o"], ""
    else:  # sqladmin instances, databases, users
        instance = f"sql/{p}/{m['i']}"
        name = m.get("d") or q.get("name") or b.get("name") or ""
        key = instance if kind == "instances" else f"{instance}/{kind}"
        if name and kind != "instances":
            key += f"/{name}"
        queued = instance if op.split(".")[-1] in ("patch", "insert", "update", "delete") else ""
        return key, refs, "", queued
    return key, refs, "", ""


FLAGS = [
    {"name": "cloudsql.iam_authentication", "type": "BOOLEAN", "requiresRestart": False,
     "engine": "POSTGRES"},
    {"name": "max_connections", "type": "INTEGER", "requiresRestart": True,
     "engine": "POSTGRES"},
    {"name": "cloudsql_iam_authentication", "type": "BOOLEAN", "requiresRestart": False,
     "engine": "MYSQL"},
    {"name": "log_bin_trust_function_creators", "type": "BOOLEAN", "requiresRestart": False,
     "engine": "MYSQL"},
    {"name": "max_connections", "type": "INTEGER", "requiresRestart": False,
     "engine": "MYSQL"},
]


def _policy_refuses(inst: dict, user: str, password: str) -> dict | None:
    """The instance's password policy (discovery, sqladmin v1 PasswordValidationPolicy:
    minLength; complexity COMPLEXITY_DEFAULT "A combination of lowercase, uppercase, numeric,
    and non-alphanumeric characters"; disallowUsernameSubstring), applied on users.insert and
    users.update when enablePasswordPolicy is on. The message wording is ours: Google's
    documentation gives the rule, not the error text."""
    policy = inst["settings"].get("passwordValidationPolicy") or {}
    if not policy.get("enablePasswordPolicy") or not password:
        return None
    problems = []
    if len(password) < int(policy.get("minLength") or 0):
        problems.append(f"shorter than {policy['minLength']} characters")
    if policy.get("complexity") == "COMPLEXITY_DEFAULT":
        classes = [any(c.islower() for c in password), any(c.isupper() for c in password),
                   any(c.isdigit() for c in password), any(not c.isalnum() for c in password)]
        if not all(classes):
            problems.append("not a combination of lowercase, uppercase, numeric and "
                            "non-alphanumeric characters")
    if policy.get("disallowUsernameSubstring") and user.lower() in password.lower():
        problems.append("contains the user name")
    if not problems:
        return None
    return _error(400, "Invalid request: Password doesn't comply with the password validation "
                       f"policy: {'; '.join(problems)}.", "INVALID_ARGUMENT", reason="invalid")


def _public(op: dict) -> dict:
    return {k: v for k, v in op.items() if not k.startswith("_")}


def _error(code: int, message: str, status: str, reason: str = "") -> dict:
    err: dict[str, Any] = {"code": code, "message": message, "status": status}
    if reason:
        err["errors"] = [{"message": message, "domain": "global", "reason": reason}]
    return {"error": err}
