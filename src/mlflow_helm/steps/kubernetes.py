"""Kubernetes steps the CLI does itself: the namespace and the external database Secret."""

from __future__ import annotations

from ..changes import CREATE, UNCHANGED, UPDATE, Change
from .base import Step


class NamespaceStep(Step):
    name = "namespace"

    def plan(self) -> list[Change]:
        if self.ctx.kube.get_namespace(self.opts.namespace):
            return [self.change(UNCHANGED, "namespace", self.opts.namespace)]
        return [self.change(CREATE, "namespace", self.opts.namespace)]

    def apply(self, changes: list[Change]) -> None:
        # The install record is written into the namespace before any step runs, so the
        # namespace is usually created already (commands.save_record).
        if not all(c.data.get("done") for c in changes):
            self.ctx.kube.create_namespace(self.opts.namespace)


class ExternalSecretStep(Step):
    """--database external: the URI goes into a Secret the chart reads (key `uri`)."""

    name = "external-db-secret"

    def enabled(self) -> bool:
        return not self.opts.local and self.opts.database == "external"

    def plan(self) -> list[Change]:
        name = f"{self.opts.namespace}/{self.opts.db_secret_name}"
        current = self.ctx.kube.get_secret(self.opts.namespace, self.opts.db_secret_name)
        at = {"namespace": self.opts.namespace}
        if current is None:
            return [self.change(CREATE, "secret", name, "database URI (not shown)", at=at)]
        if current.get("uri") != self.opts.external_uri:
            return [self.change(UPDATE, "secret", name, "database URI changed (not shown)",
                                at=at)]
        return [self.change(UNCHANGED, "secret", name, at=at)]

    def apply(self, changes: list[Change]) -> None:
        self.ctx.kube.put_secret(self.opts.namespace, self.opts.db_secret_name,
                                 {"uri": self.opts.external_uri})
