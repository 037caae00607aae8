"""GKE (container v1): the cluster's Workload Identity configuration."""

from __future__ import annotations

from . import GoogleApis, not_found


class Container:
    def __init__(self, apis: GoogleApis) -> None:
        self.apis = apis

    def get_cluster(self, project: str, location: str, cluster: str) -> dict | None:
        svc = self.apis.service("container")
        name = f"projects/{project}/locations/{location}/clusters/{cluster}"
        req = svc.projects().locations().clusters().get(name=name)
        try:
            return self.apis.execute(req, "clusters.get", name)
        except Exception as exc:
            if not_found(exc):
                return None
            raise
