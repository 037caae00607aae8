"""Start every fake in the foreground, for trying the CLI (and writing its docs) offline.

    python -m tests.fakes.serve /tmp/fakes      # prints the environment to export

Project my-proj, GKE cluster prod in europe-west1 with Workload Identity, Cloud SQL
instances pg (PostgreSQL 16) and my-sql (MySQL 8.0), fake-gcs-server with bucket IAM, a
Kubernetes API, and the recording `helm` stand-in in DIR/bin. Ctrl-C stops them. No pytest:
`make demo` (tests/fakes/demo.py) runs the same world.
"""

from __future__ import annotations

import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.fakes.gcs import FakeGcs
from tests.fakes.google import FakeGoogle
from tests.fakes.helm_recorder import write_stand_in
from tests.fakes.kube import FakeKube, write_kubeconfig
from tests.fakes.tools import REPO_ROOT, ToolMissing, find_helm


@contextmanager
def fake_world(directory: str | Path, op_seconds: float = 2.0):
    """Start the fakes; yield (environment for the CLI, counts()); stop them all on the way
    out, whatever ends the block (an error, Ctrl-C, SIGTERM)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    real_helm = find_helm("4")  # before anything starts: a missing Helm leaves nothing behind
    google = FakeGoogle(op_seconds=op_seconds)
    google.add_project("my-proj")
    google.add_cluster("my-proj", "europe-west1", "prod")
    google.add_instance("my-proj", "pg", ip_types=("PRIMARY", "PRIVATE"))
    google.add_instance("my-proj", "my-sql", version="MYSQL_8_0", binlog=True)
    gcs, kube = FakeGcs(), FakeKube()
    started = []
    try:
        # Each is listed before it starts: one that fails half way is stopped too.
        started.append(google)
        google_url = google.serve()
        started.append(gcs)
        gcs_url = gcs.start(root / "fake-gcs.log")
        (root / "fake-gcs.pid").write_text(f"{gcs.proc.pid}\n")
        started.append(kube)
        kube_url = kube.serve()
        kubeconfig = write_kubeconfig(root / "kubeconfig", kube_url,
                                      "gke_my-proj_europe-west1_prod")
        env = {"MLFLOW_HELM_GOOGLE_API_BASE": google_url, "STORAGE_EMULATOR_HOST": gcs_url,
               "KUBECONFIG": str(kubeconfig), "HELM_BIN": str(write_stand_in(root / "bin" /
                                                                             "helm")),
               "REAL_HELM": real_helm, "HELM_RECORD": str(root / "helm-calls.jsonl"),
               "HELM_STATE": str(root / "helm-state.json"), "HELM_TEST_RESULT": "pass",
               "PYTHONPATH": str(REPO_ROOT)}
        yield env, lambda: {"google": google.counts(), "gcs": gcs.counts()}
    finally:
        for fake in reversed(started):
            fake.close()


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM (a CI runner, `kill`) ends the block as Ctrl-C does, so `finally` runs."""
    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(directory: str) -> int:
    try:
        with sigterm_as_interrupt(), fake_world(directory) as (env, counts):
            print("\n".join(f"export {k}={v}" for k, v in env.items()), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print(f"calls: {counts()}", file=sys.stderr)
    except ToolMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mlflow-helm-fakes"))
