"""Everything a command works with, built in one place and handed to the steps.

Tests build a Context with adapters pointed at the fakes; the CLI builds it from the
options and the environment. Facts found by the preflight land here too.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .gcp import GoogleApis
from .helm import Helm
from .kube import Kube
from .options import Options


@dataclass
class Facts:
    """What the preflight read: used by plans and by the chart values."""

    project_number: str = ""
    kube_version: str = ""
    helm_version: str = ""
    workload_pool: str = ""  # the cluster's, e.g. PROJECT.svc.id.goog or a fleet host's
    pool_project_number: str = ""  # the number of the pool's project (principal:// members)
    wi_node_selector: bool = False  # some node pools lack the GKE metadata server
    pool_values: dict = field(default_factory=dict)  # sizing that fits max_connections
    instance: dict = field(default_factory=dict)
    engine: str = ""  # postgres | mysql
    connection_name: str = ""
    ip_type: str = ""
    bucket_location: str = ""
    # The Cloud SQL backup the chart's migration Job may migrate after (migrations.backup.
    # cloudSql): the one this run took, else the one the deployed release names.
    cloudsql_backup: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Context:
    opts: Options
    apis: GoogleApis
    kube: Kube
    helm: Helm
    facts: Facts = field(default_factory=Facts)
    say: Callable[[str], None] = lambda _msg: None
    # Called after each step applied (tests inject crashes here).
    after_apply: Callable[[str], None] = lambda _step: None
    # The release's install record (record.py), read at the start of the command.
    record: Any = None
    # The run's lock (lock.py), when the command holds one.
    lock: Any = None
    _adapters: dict = field(default_factory=dict)
    _reads: dict = field(default_factory=dict)
    _reads_lock: threading.Lock = field(default_factory=threading.Lock)

    def read_once(self, key: tuple, read: Callable[[], Any]) -> Any:
        """For plans: a read two steps both need (the service account, the bucket) goes to
        the API once per command, even when both plans ask at the same moment."""
        with self._reads_lock:
            future = self._reads.get(key)
            mine = future is None
            if mine:
                future = self._reads[key] = Future()
        if mine:
            try:
                future.set_result(read())
            except BaseException as exc:
                future.set_exception(exc)
        return future.result()

    def _adapter(self, key: str, factory):
        if key not in self._adapters:
            self._adapters[key] = factory(self.apis)
        return self._adapters[key]

    @property
    def iam(self):
        from .gcp.iam import Iam

        return self._adapter("iam", Iam)

    @property
    def crm(self):
        from .gcp.resourcemanager import ResourceManager

        return self._adapter("crm", ResourceManager)

    @property
    def services(self):
        from .gcp.serviceusage import ServiceUsage

        return self._adapter("services", ServiceUsage)

    @property
    def sql(self):
        from .gcp.sqladmin import SqlAdmin

        return self._adapter("sql", SqlAdmin)

    @property
    def container(self):
        from .gcp.container import Container

        return self._adapter("container", Container)

    @property
    def storage(self):
        from .gcp.storage import Storage

        return self._adapter("storage", Storage)

    # Identities -----------------------------------------------------------------------
    @property
    def workload_pool(self) -> str:
        return self.facts.workload_pool or f"{self.opts.project}.svc.id.goog"

    @property
    def ksa_subject(self) -> str:
        return f"{self.workload_pool}[{self.opts.namespace}/{self.opts.ksa_name}]"

    @property
    def member(self) -> str:
        """Who gets the roles: the Google service account, or the Kubernetes principal."""
        if self.opts.needs_gsa:
            return f"serviceAccount:{self.opts.gsa_email}"
        return (
            f"principal://iam.googleapis.com/projects/"
            f"{self.facts.pool_project_number or self.facts.project_number}/locations/"
            f"global/workloadIdentityPools/{self.workload_pool}/subject/ns/"
            f"{self.opts.namespace}/sa/{self.opts.ksa_name}"
        )

    @property
    def instance_project(self) -> str:
        return self.opts.instance_project or self.opts.project

    @property
    def iam_db_user(self) -> str:
        """The Cloud SQL IAM user's name as the database sees it."""
        email = self.opts.gsa_email
        if self.facts.engine == "mysql":
            return email.split("@", 1)[0]
        return email.removesuffix(".gserviceaccount.com")
