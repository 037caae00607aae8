"""IAM v1: Google service accounts and their own IAM policy (Workload Identity)."""

from __future__ import annotations

from . import GoogleApis, http_status, not_found
from .policy import Policy, ensure_member


class Iam:
    def __init__(self, apis: GoogleApis) -> None:
        self.apis = apis

    @staticmethod
    def _name(project: str, email: str) -> str:
        return f"projects/{project}/serviceAccounts/{email}"

    def get_service_account(self, project: str, email: str) -> dict | None:
        svc = self.apis.service("iam")
        req = svc.projects().serviceAccounts().get(name=self._name(project, email))
        try:
            return self.apis.execute(req, "serviceAccounts.get", email)
        except Exception as exc:
            if not_found(exc):
                return None
            raise

    def create_service_account(self, project: str, account_id: str, display: str) -> dict:
        svc = self.apis.service("iam")
        req = svc.projects().serviceAccounts().create(
            name=f"projects/{project}",
            body={"accountId": account_id, "serviceAccount": {"displayName": display}},
        )
        email = f"{account_id}@{project}.iam.gserviceaccount.com"
        try:
            return self.apis.execute(req, "serviceAccounts.create", email)
        except Exception as exc:
            # Someone (or our own crashed run) created it in between: that is what we want.
            if http_status(exc) == 409:
                return {"email": email}
            raise

    def delete_service_account(self, project: str, email: str) -> None:
        svc = self.apis.service("iam")
        req = svc.projects().serviceAccounts().delete(name=self._name(project, email))
        self.apis.execute(req, "serviceAccounts.delete", email)

    def get_policy(self, project: str, email: str) -> Policy:
        svc = self.apis.service("iam")
        req = svc.projects().serviceAccounts().getIamPolicy(
            resource=self._name(project, email), options_requestedPolicyVersion=3)
        return self.apis.execute(req, "serviceAccounts.getIamPolicy", email)

    def set_policy(self, project: str, email: str, policy: Policy) -> Policy:
        svc = self.apis.service("iam")
        req = svc.projects().serviceAccounts().setIamPolicy(
            resource=self._name(project, email), body={"policy": policy})
        return self.apis.execute(req, "serviceAccounts.setIamPolicy", email)

    def ensure_member(self, project: str, email: str, role: str, member: str,
                      present: bool = True) -> bool:
        return ensure_member(lambda: self.get_policy(project, email),
                             lambda p: self.set_policy(project, email, p), role, member,
                             self.apis.retry, f"service account {email}", present)
