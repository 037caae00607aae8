"""Cloud Storage through google-cloud-storage: the bucket and its bucket-level IAM."""

from __future__ import annotations

from .. import interrupt
from ..errors import PermissionDenied, UserError
from ..retry import retrying
from . import GoogleApis, conflict, denied, error_reason, http_status
from .policy import Policy, ensure_member


class Storage:
    def __init__(self, apis: GoogleApis) -> None:
        self.apis = apis

    def _call(self, fn, operation: str, resource: str):
        try:
            interrupt.check()
            return fn()
        except Exception as exc:
            if http_status(exc) == 403:
                error = denied(exc, operation, resource, self.apis.project,
                               self.apis.project_number)
                if operation == "buckets.get" and isinstance(error, PermissionDenied):
                    # Bucket names are global: a 403 on one bucket is as likely another
                    # project's bucket as a missing role in ours; the message gives both.
                    raise PermissionDenied(
                        f"cannot read {resource} ({error_reason(exc)}): it belongs to "
                        f"another project, or you lack storage.buckets.get in "
                        f"{self.apis.project or 'the project'}",
                        "bucket names are global: if the bucket is not yours, choose another "
                        "--bucket; if it is, grant yourself roles/storage.admin on it") from exc
                raise error from exc
            raise

    def get_bucket(self, name: str) -> dict | None:
        client = self.apis.storage()
        bucket = self._call(lambda: client.lookup_bucket(name), "buckets.get", f"gs://{name}")
        if bucket is None:
            return None
        return {
            "name": bucket.name,
            "location": bucket.location,
            "versioning": bool(bucket.versioning_enabled),
            "ubla": bool(bucket.iam_configuration.uniform_bucket_level_access_enabled),
        }

    def create_bucket(self, name: str, project: str, location: str) -> None:
        from google.api_core.exceptions import Conflict

        client = self.apis.storage()
        bucket = client.bucket(name)
        bucket.versioning_enabled = True
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"
        try:
            self._call(lambda: client.create_bucket(bucket, project=project,
                                                    location=location or None),
                       "buckets.create", f"gs://{name}")
        except Conflict as exc:
            # 409: it exists. Ours if a crashed run created it (we can read it); otherwise
            # another project owns the name (a read then answers 403, or 404 while the
            # owner's delete propagates).
            if self.get_bucket(name) is None:
                raise UserError(f"bucket name {name} is taken by another project",
                                "bucket names are global: choose another --bucket") from exc
            return

    def delete_bucket(self, name: str) -> None:
        client = self.apis.storage()
        self._call(lambda: client.bucket(name).delete(), "buckets.delete", f"gs://{name}")

    def count_objects(self, name: str, limit: int = 1000) -> int:
        """Objects in the bucket, noncurrent versions included (with versioning on, GCS
        refuses to delete a bucket while any version is left), up to `limit`."""
        client = self.apis.storage()
        return self._call(lambda: sum(1 for _ in client.list_blobs(
            name, versions=True, max_results=limit)), "objects.list", f"gs://{name}")

    def delete_objects(self, name: str) -> int:
        """Delete every object and every version in the bucket; how many were deleted."""
        client = self.apis.storage()
        n = 0
        for blob in self._call(lambda: list(client.list_blobs(name, versions=True)),
                               "objects.list", f"gs://{name}"):
            self._call(lambda blob=blob: blob.delete(), "objects.delete", f"gs://{name}")
            n += 1
        return n

    def get_policy(self, name: str) -> Policy:
        client = self.apis.storage()
        policy = self._call(
            lambda: retrying(lambda: client.bucket(name).get_iam_policy(
                requested_policy_version=3), lambda e: http_status(e) in (429, 500, 502, 503,
                                                                          504),
                self.apis.retry, f"get IAM policy of gs://{name}"),
            "buckets.getIamPolicy", f"gs://{name}")
        return policy.to_api_repr()

    def set_policy(self, name: str, policy: Policy) -> None:
        from google.api_core.exceptions import PreconditionFailed
        from google.api_core.iam import Policy as GcsPolicy
        from google.api_core.retry import Retry

        client = self.apis.storage()
        # 412 means the etag is stale: the whole read-modify-write cycle runs again, so no
        # retry of this single call on 412; transient errors are retried here.
        transient = Retry(predicate=lambda e: http_status(e) in (429, 500, 502, 503, 504)
                          and not isinstance(e, PreconditionFailed),
                          initial=self.apis.retry.base, maximum=self.apis.retry.cap,
                          timeout=120)
        self._call(lambda: client.bucket(name).set_iam_policy(
            GcsPolicy.from_api_repr(policy), retry=transient),
            "buckets.setIamPolicy", f"gs://{name}")

    def ensure_member(self, name: str, role: str, member: str, present: bool = True) -> bool:
        return ensure_member(lambda: self.get_policy(name),
                             lambda p: self.set_policy(name, p), role, member,
                             self.apis.retry, f"gs://{name}", present)


__all__ = ["Storage", "conflict"]
