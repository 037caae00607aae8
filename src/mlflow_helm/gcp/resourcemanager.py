"""Cloud Resource Manager v1: the project (its number) and its IAM policy."""

from __future__ import annotations

from . import GoogleApis
from .policy import Policy, ensure_member


class ResourceManager:
    def __init__(self, apis: GoogleApis) -> None:
        self.apis = apis

    def project_number(self, project: str) -> str:
        """The project's number. A project that does not exist, or that the caller cannot
        see, is a 403 (discovery, cloudresourcemanager v1 projects.get: "The caller must have
        read permissions for this Project"), which gcp.denied turns into a UserError."""
        svc = self.apis.service("cloudresourcemanager")
        body = self.apis.execute(svc.projects().get(projectId=project),
                                 "projects.get", project)
        return str(body["projectNumber"])

    def get_policy(self, project: str) -> Policy:
        svc = self.apis.service("cloudresourcemanager")
        req = svc.projects().getIamPolicy(
            resource=project, body={"options": {"requestedPolicyVersion": 3}})
        return self.apis.execute(req, "projects.getIamPolicy", f"project {project}")

    def set_policy(self, project: str, policy: Policy) -> Policy:
        svc = self.apis.service("cloudresourcemanager")
        req = svc.projects().setIamPolicy(resource=project, body={"policy": policy})
        return self.apis.execute(req, "projects.setIamPolicy", f"project {project}")

    def ensure_member(self, project: str, role: str, member: str, present: bool = True) -> bool:
        return ensure_member(lambda: self.get_policy(project),
                             lambda p: self.set_policy(project, p), role, member,
                             self.apis.retry, f"project {project}", present)
