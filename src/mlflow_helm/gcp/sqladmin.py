"""Cloud SQL Admin v1: instance, databases, users, flags, and the operation wait helper."""

from __future__ import annotations

import threading
import time

from .. import interrupt
from ..errors import CloudError
from . import GoogleApis, error_reason, http_status, not_found


def _in_progress(exc: Exception) -> bool:
    """409 from Cloud SQL: another operation runs on the instance; try again later."""
    return http_status(exc) == 409 and "already exists" not in error_reason(exc).lower()


class SqlAdmin:
    def __init__(self, apis: GoogleApis) -> None:
        self.apis = apis
        # An instance runs one operation at a time: ours queue here, in order, instead of
        # polling each other's 409s. Another client's operation still gets the 409 wait.
        self._queues: dict[tuple[str, str], threading.Lock] = {}
        self._queues_lock = threading.Lock()

    def _queue(self, project: str, instance: str) -> threading.Lock:
        with self._queues_lock:
            return self._queues.setdefault((project, instance), threading.Lock())

    @property
    def _svc(self):
        return self.apis.service("sqladmin")

    def get_instance(self, project: str, instance: str) -> dict | None:
        req = self._svc.instances().get(project=project, instance=instance)
        try:
            return self.apis.execute(req, "instances.get", f"{project}:{instance}")
        except Exception as exc:
            if not_found(exc):
                return None
            raise

    def get_database(self, project: str, instance: str, database: str) -> dict | None:
        req = self._svc.databases().get(project=project, instance=instance, database=database)
        try:
            return self.apis.execute(req, "databases.get", f"database {database}")
        except Exception as exc:
            if not_found(exc):
                return None
            raise

    def list_flags(self, database_version: str) -> dict[str, dict]:
        """The flags Cloud SQL offers for a database version, by name, each with
        `requiresRestart` (discovery, sqladmin v1 flags.list and Flag)."""
        req = self._svc.flags().list(databaseVersion=database_version)
        body = self.apis.execute(req, "flags.list", f"flags of {database_version}")
        return {f["name"]: f for f in body.get("items", [])}

    def list_users(self, project: str, instance: str) -> list[dict]:
        req = self._svc.users().list(project=project, instance=instance)
        return self.apis.execute(req, "users.list", f"{project}:{instance}").get("items", [])

    def _mutate(self, make_request, operation: str, resource: str, project: str,
                instance: str) -> dict | None:
        """Start an operation (retrying 409 operation-in-progress) and wait for it; one of
        ours at a time per instance. Returns the operation DONE (None: it existed already)."""

        def start():
            try:
                return self.apis.execute(make_request(), operation, resource)
            except Exception as exc:
                if http_status(exc) == 409 and "already exists" in error_reason(exc).lower():
                    return None  # created concurrently (or by a crashed earlier run)
                raise

        with self._queue(project, instance):
            op = self._start_when_idle(start, f"{operation} {resource}")
            return None if op is None else self.wait(project, op, f"{operation} {resource}")

    def _start_when_idle(self, start, what: str):
        """Start an operation, waiting while another runs on the instance (409).

        Bounded by the operation timeout, not by a count of attempts: the operation ahead may
        be a flag change that restarts the instance, which takes minutes.
        """
        policy = self.apis.retry
        begin = time.monotonic()
        last_report = begin
        attempt = 0
        while True:
            try:
                return start()
            except Exception as exc:
                now = time.monotonic()
                if not _in_progress(exc) or now - begin > policy.poll_timeout:
                    raise
                if now - last_report >= policy.report_every:
                    self.apis.say(f"  … {what}: waiting for the instance's current operation "
                                  f"({now - begin:.0f}s)")
                    last_report = now
                interrupt.sleep(max(policy.poll_interval, policy.delay(min(attempt, 5))))
                attempt += 1

    def wait(self, project: str, op: dict, what: str) -> dict:
        """Poll an operation to DONE; raise its error. Reports elapsed time while waiting."""
        start = time.monotonic()
        last_report = start
        while op.get("status") != "DONE":
            now = time.monotonic()
            if now - start > self.apis.retry.poll_timeout:
                raise CloudError(f"{what}: operation {op.get('name')} still "
                                 f"{op.get('status')} after {now - start:.0f}s",
                                 "check it with `gcloud sql operations list`, then re-run")
            if now - last_report >= self.apis.retry.report_every:
                self.apis.say(f"  … {what}: {op.get('status')} ({now - start:.0f}s)")
                last_report = now
            interrupt.sleep(self.apis.retry.poll_interval)
            req = self._svc.operations().get(project=project, operation=op["name"])
            op = self.apis.execute(req, "operations.get", f"operation {op['name']}")
        errors = (op.get("error") or {}).get("errors") or []
        if errors:
            detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
            if any("already exists" in (e.get("message") or "").lower() for e in errors):
                return op
            raise CloudError(f"Cloud SQL operation {what} failed: {detail}",
                             f"see `gcloud sql operations describe {op['name']}`")
        elapsed = time.monotonic() - start
        if elapsed >= self.apis.retry.report_every / 2:
            self.apis.say(f"  {what}: done in {elapsed:.0f}s")
        return op

    def backup(self, project: str, instance: str, description: str) -> str:
        """An on-demand backup of the instance, taken and verified: backupRuns.insert, its
        operation polled to DONE (one of ours at a time on the instance), then the run
        read back and required SUCCESSFUL. Returns
        the backup run's id (Operation.backupContext.backupId, discovery sqladmin v1). A
        backup operation that fails is started once more; a second failure is an error,
        and the upgrade does not go ahead."""
        op: dict | None = None
        for attempt in (1, 2):
            try:
                op = self._mutate(
                    lambda: self._svc.backupRuns().insert(
                        project=project, instance=instance, body={"description": description}),
                    "backupRuns.insert", f"backup of {instance}", project, instance)
                break
            except CloudError:
                if attempt == 2:
                    raise
                self.apis.say(f"  … backupRuns.insert {instance}: the backup failed; "
                              "starting it once more")
        backup_id = str(((op or {}).get("backupContext") or {}).get("backupId") or "")
        if not backup_id:
            raise CloudError(f"backupRuns.insert {instance}: operation "
                             f"{(op or {}).get('name')} names no backup",
                             f"check `gcloud sql backups list --instance {instance}`")
        run = self.apis.execute(self._svc.backupRuns().get(
            project=project, instance=instance, id=backup_id), "backupRuns.get",
            f"backup {backup_id} of {instance}")
        if run.get("status") != "SUCCESSFUL":
            raise CloudError(f"backup {backup_id} of {instance} is {run.get('status')}, "
                             "not SUCCESSFUL", f"check `gcloud sql backups describe "
                             f"{backup_id} --instance {instance}`, then re-run")
        return backup_id

    def create_database(self, project: str, instance: str, database: str) -> None:
        self._mutate(
            lambda: self._svc.databases().insert(
                project=project, instance=instance,
                body={"name": database, "project": project, "instance": instance}),
            "databases.insert", f"database {database}", project, instance)

    def delete_database(self, project: str, instance: str, database: str) -> None:
        self._mutate(
            lambda: self._svc.databases().delete(
                project=project, instance=instance, database=database),
            "databases.delete", f"database {database}", project, instance)

    def create_user(self, project: str, instance: str, name: str, user_type: str,
                    password: str | None = None) -> None:
        body = {"name": name, "type": user_type}
        if password is not None:
            body["password"] = password
        self._mutate(lambda: self._svc.users().insert(project=project, instance=instance,
                                                      body=body),
                     "users.insert", f"user {name}", project, instance)

    def set_password(self, project: str, instance: str, name: str, password: str,
                     host: str | None = None) -> None:
        kwargs = {"host": host} if host else {}
        self._mutate(lambda: self._svc.users().update(
            project=project, instance=instance, name=name,
            body={"name": name, "password": password}, **kwargs),
            "users.update", f"user {name}", project, instance)

    def delete_user(self, project: str, instance: str, name: str,
                    host: str | None = None) -> None:
        kwargs = {"host": host} if host else {}
        self._mutate(lambda: self._svc.users().delete(project=project, instance=instance,
                                                      name=name, **kwargs),
                     "users.delete", f"user {name}", project, instance)

    def set_flags(self, project: str, instance: str, flags: dict[str, str]) -> None:
        """Set database flags, keeping every other flag (patch replaces the whole list)."""

        def patch():
            current = self.get_instance(project, instance) or {}
            settings = current.get("settings", {})
            merged = {f["name"]: f["value"] for f in settings.get("databaseFlags", [])}
            merged.update(flags)
            body = {"settings": {
                "databaseFlags": [{"name": k, "value": v} for k, v in sorted(merged.items())],
                "settingsVersion": settings.get("settingsVersion"),
            }}
            return self._svc.instances().patch(project=project, instance=instance, body=body)

        self._mutate(patch, "instances.patch", f"instance {instance}", project, instance)
