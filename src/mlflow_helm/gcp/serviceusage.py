"""Service Usage v1: which of the APIs a run will call are enabled in the project.

A disabled API answers every call with 403 SERVICE_DISABLED; reading them all at once in the
preflight turns that into one message, before any change, naming each API to enable.
"""

from __future__ import annotations

from . import GoogleApis

# services.batchGet takes at most 30 names per call (discovery, serviceusage v1
# services.batchGet `names`: "A single request can get a maximum of 30 services at a time").
BATCH = 30


class ServiceUsage:
    def __init__(self, apis: GoogleApis) -> None:
        self.apis = apis

    def disabled(self, project_number: str, services: list[str]) -> list[str]:
        """The names in `services` (e.g. sqladmin.googleapis.com) not ENABLED in the project."""
        svc = self.apis.service("serviceusage")
        parent = f"projects/{project_number}"
        states: dict[str, str] = {}
        for start in range(0, len(services), BATCH):
            names = [f"{parent}/services/{s}" for s in services[start:start + BATCH]]
            req = svc.services().batchGet(parent=parent, names=names)
            body = self.apis.execute(req, "services.batchGet", parent)
            for item in body.get("services", []):
                states[item.get("name", "").rsplit("/", 1)[-1]] = item.get("state", "")
        return [s for s in services if states.get(s) != "ENABLED"]
