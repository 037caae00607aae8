"""Google Cloud steps: service account, Workload Identity, project roles, bucket and its IAM."""

from __future__ import annotations

import time

from .. import interrupt
from ..changes import CREATE, UNCHANGED, Change
from ..errors import CloudError, UserError
from ..gcp import error_reason, http_status
from .base import Step

WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"
BUCKET_ROLE = "roles/storage.objectUser"
CLOUDSQL_CLIENT = "roles/cloudsql.client"
CLOUDSQL_INSTANCE_USER = "roles/cloudsql.instanceUser"


def eventually(ctx, fn, what: str):
    """Retry fn while a just-created service account is not visible yet (bounded)."""
    deadline = time.monotonic() + ctx.apis.retry.consistency_timeout
    delay = ctx.apis.retry.base
    while True:
        try:
            return fn()
        except Exception as exc:
            status = http_status(exc)
            text = error_reason(exc).lower()
            unseen = status == 404 or (status == 400 and "does not exist" in text)
            if not unseen or time.monotonic() > deadline:
                if unseen:
                    raise CloudError(f"{what}: the new service account is still not visible",
                                     "IAM is eventually consistent: re-run in a minute") from exc
                raise
            ctx.say(f"  … {what}: waiting for the new service account to propagate")
            interrupt.sleep(delay)
            delay = min(delay * 2, ctx.apis.retry.cap)


def service_account(step: Step) -> dict | None:
    """The plan's read of the Google service account (shared by the steps that need it)."""
    project, email = step.opts.gsa_project, step.opts.gsa_email
    return step.ctx.read_once(("service account", project, email),
                              lambda: step.ctx.iam.get_service_account(project, email))


def bucket(step: Step) -> dict | None:
    """The plan's read of the bucket (shared by the bucket and bucket IAM steps)."""
    name = step.opts.bucket_name
    return step.ctx.read_once(("bucket", name), lambda: step.ctx.storage.get_bucket(name))


class ServiceAccountStep(Step):
    name = "service-account"

    def enabled(self) -> bool:
        return self.opts.needs_gsa

    def plan(self) -> list[Change]:
        email = self.opts.gsa_email
        at = {"project": self.opts.gsa_project}
        if service_account(self):
            return [self.change(UNCHANGED, "google service account", email, at=at)]
        if not self.opts.gsa_creatable:
            raise UserError(f"--gsa {email}: no such service account, and only accounts "
                            "named NAME@PROJECT.iam.gserviceaccount.com can be created",
                            "pass an existing account, or a NAME to create one")
        where = ("identity of MLflow" if self.opts.gsa_project == self.opts.project
                 else f"identity of MLflow, in project {self.opts.gsa_project}")
        return [self.change(CREATE, "google service account", email, where, at=at)]

    def apply(self, changes: list[Change]) -> None:
        self.ctx.iam.create_service_account(
            self.opts.gsa_project, self.opts.gsa_email.split("@")[0],
            f"MLflow ({self.opts.namespace}/{self.opts.release})")


class WorkloadIdentityStep(Step):
    name = "workload-identity"

    def enabled(self) -> bool:
        return self.opts.needs_gsa

    def _member(self) -> str:
        return f"serviceAccount:{self.ctx.ksa_subject}"

    def plan(self) -> list[Change]:
        email = self.opts.gsa_email
        kind = f"iam binding {WORKLOAD_IDENTITY_USER}"
        detail = f"on {email}"
        at = {"project": self.opts.gsa_project, "serviceAccount": email}
        if service_account(self) is None:
            return [self.change(CREATE, kind, self._member(), detail, at=at)]
        from ..gcp.policy import has_member

        policy = self.ctx.iam.get_policy(self.opts.gsa_project, email)
        bound = has_member(policy, WORKLOAD_IDENTITY_USER, self._member())
        return [self.change(UNCHANGED if bound else CREATE, kind, self._member(), detail,
                            at=at)]

    def apply(self, changes: list[Change]) -> None:
        eventually(self.ctx, lambda: self.ctx.iam.ensure_member(
            self.opts.gsa_project, self.opts.gsa_email, WORKLOAD_IDENTITY_USER,
            self._member()),
            "Workload Identity binding")


class ProjectIamStep(Step):
    name = "project-iam"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and self.opts.database == "cloudsql"

    def roles(self) -> list[str]:
        roles = [CLOUDSQL_CLIENT]
        if self.opts.iam_db_auth:
            roles.append(CLOUDSQL_INSTANCE_USER)
        return roles

    def plan(self) -> list[Change]:
        from ..gcp.policy import has_member

        project = self.ctx.instance_project
        policy = self.ctx.crm.get_policy(project)
        return [
            self.change(UNCHANGED if has_member(policy, role, self.ctx.member) else CREATE,
                        f"iam binding {role}", self.ctx.member, f"on project {project}",
                        role=role, at={"project": project})
            for role in self.roles()
        ]

    def apply(self, changes: list[Change]) -> None:
        project = self.ctx.instance_project
        for change in changes:
            if change.action == UNCHANGED:
                continue
            role = change.data["role"]
            eventually(self.ctx, lambda role=role: self.ctx.crm.ensure_member(
                project, role, self.ctx.member), f"grant {role}")


class BucketStep(Step):
    name = "bucket"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and bool(self.opts.bucket_name)

    def plan(self) -> list[Change]:
        name = f"gs://{self.opts.bucket_name}"
        found = bucket(self)
        if found:
            notes = []
            if not found["ubla"]:
                notes.append("uniform bucket-level access is off")
            if not found["versioning"]:
                notes.append("versioning is off")
            return [self.change(UNCHANGED, "gcs bucket", name, "; ".join(notes),
                                at={"bucket": self.opts.bucket_name})]
        if not self.opts.create_bucket:
            raise UserError(f"bucket {name} does not exist",
                            "pass --create-bucket to create it (uniform access, versioning), "
                            "or check the name")
        location = self.opts.region or self.ctx.facts.bucket_location
        return [self.change(CREATE, "gcs bucket", name,
                            f"{location or 'US'}, uniform access, versioning",
                            at={"bucket": self.opts.bucket_name})]

    def apply(self, changes: list[Change]) -> None:
        self.ctx.storage.create_bucket(self.opts.bucket_name, self.opts.project,
                                       self.opts.region or self.ctx.facts.bucket_location)


class BucketIamStep(Step):
    name = "bucket-iam"

    def enabled(self) -> bool:
        return self.opts.uses_gcp and bool(self.opts.bucket_name)

    def plan(self) -> list[Change]:
        from ..gcp.policy import has_member

        kind = f"iam binding {BUCKET_ROLE}"
        where = f"on gs://{self.opts.bucket_name}"
        at = {"bucket": self.opts.bucket_name}
        if bucket(self) is None:
            return [self.change(CREATE, kind, self.ctx.member, where, at=at)]
        policy = self.ctx.storage.get_policy(self.opts.bucket_name)
        bound = has_member(policy, BUCKET_ROLE, self.ctx.member)
        return [self.change(UNCHANGED if bound else CREATE, kind, self.ctx.member, where,
                            at=at)]

    def apply(self, changes: list[Change]) -> None:
        eventually(self.ctx, lambda: self.ctx.storage.ensure_member(
            self.opts.bucket_name, BUCKET_ROLE, self.ctx.member), "bucket IAM binding")
