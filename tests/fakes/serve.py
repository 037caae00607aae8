"""Start every fake in the foreground, for trying the CLI (and writing its docs) offline.

    python -m tests.fakes.serve /tmp/fakes      # prints the environment to export

Project my-proj, GKE cluster prod in europe-west1 with Workload Identity, Cloud SQL
instances pg (PostgreSQL 16) and my-sql (MySQL 8.0), fake-gcs-server with bucket IAM, a
Kubernetes API, and the recording `helm` stand-in in DIR/bin. Ctrl-C stops them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tests.conftest import helm_binary
from tests.fakes.gcs import FakeGcs
from tests.fakes.google import FakeGoogle
from tests.fakes.helm_recorder import write_stand_in
from tests.fakes.kube import FakeKube, write_kubeconfig


def main(directory: str) -> None:
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    google = FakeGoogle(op_seconds=2.0)
    google.add_project("my-proj")
    google.add_cluster("my-proj", "europe-west1", "prod")
    google.add_instance("my-proj", "pg", ip_types=("PRIMARY", "PRIVATE"))
    google.add_instance("my-proj", "my-sql", version="MYSQL_8_0", binlog=True)
    gcs = FakeGcs()
    kube = FakeKube()
    urls = google.serve(), gcs.start(root / "fake-gcs.log"), kube.serve()
    kubeconfig = write_kubeconfig(root / "kubeconfig", urls[2], "gke_my-proj_europe-west1_prod")
    helm = write_stand_in(root / "bin" / "helm")
    repo = Path(__file__).resolve().parents[2]
    print(f"""export MLFLOW_HELM_GOOGLE_API_BASE={urls[0]}
export STORAGE_EMULATOR_HOST={urls[1]}
export KUBECONFIG={kubeconfig}
export HELM_BIN={helm}
export REAL_HELM={helm_binary("4")}
export HELM_RECORD={root}/helm-calls.jsonl HELM_STATE={root}/helm-state.json
export PYTHONPATH={repo}""", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        google.close()
        gcs.close()
        kube.close()
        c = {"google": google.counts(), "gcs": gcs.counts()}
        print(f"calls: {c}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mlflow-helm-fakes")
