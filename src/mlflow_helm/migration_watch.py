"""The migration Job's failure, caught while `helm upgrade` waits for it.

With --wait-for-jobs Helm fails the upgrade when the migration Job fails ("job is failed:
NS/NAME", Helm 3.17.3 pkg/kube/ready.go; "resource Job/NS/NAME not ready. status: Failed",
Helm 4.1.4 pkg/kube/statuswait.go), and with --atomic / --rollback-on-failure it then rolls
back, which deletes the new Job and its pods: by the time the CLI hears of the failure, the
log that says why is gone. So while the upgrade runs, a thread looks at the release's
migration Jobs every few seconds and keeps the last lines of the first container that exited
non-zero (backup-plan, backup or migrate). A failed read is no failure of the upgrade: the
report is then Helm's own.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class MigrationWatch:
    def __init__(self, kube, namespace: str, release: str, interval: float) -> None:
        self.kube, self.namespace, self.release = kube, namespace, release
        self.interval = interval
        self.selector = (f"app.kubernetes.io/instance={release},"
                         "app.kubernetes.io/component=migrate")
        # (job, container, log tail) of the failure seen last.
        self.failure: tuple[str, str, str] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MigrationWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.look()

    def look(self) -> None:
        try:
            for job in self.kube.list_jobs(self.namespace, self.selector):
                found = self.kube.failed_container(self.namespace, job)
                if found:
                    self.failure = (job, *found)
                    return
        except Exception as exc:  # the upgrade goes on; Helm's own report stays
            log.info("reading the migration Jobs of %s/%s: %s", self.namespace,
                     self.release, exc)

    def report(self) -> str:
        """The failure as the error tells it ("" when none was seen)."""
        if self.failure is None:
            return ""
        job, container, tail = self.failure
        lines = "\n".join(f"  {line}" for line in tail.rstrip().splitlines()) or "  (empty)"
        return (f"\nThe migration Job {job} failed in its {container} container; its last "
                f"lines:\n{lines}")

    def hint(self) -> str:
        job, container, _ = self.failure or ("JOB", "migrate", "")
        return (f"fix what the log names and run the install again: the next migration starts "
                f"from the revision the database is at. Helm rolled the release back, which "
                f"deletes the Job; while one exists: `kubectl -n {self.namespace} logs "
                f"job/{job} -c {container}` (chart README, Upgrade runbook)")
