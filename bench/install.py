"""Install orchestration benchmark: is `mlflow-helm install` as fast as its dependencies allow?

    .venv/bin/python bench/install.py            # 100 ms per Google call, 2 s operations
    .venv/bin/python bench/install.py --latency 0.01 --op-seconds 0.2 --sa-delay 0.1

Runs the real CLI (`python -m mlflow_helm install`, default retry and polling policy) for
Cloud SQL for PostgreSQL with a password user, a new GCS bucket and a new Google service
account, against the project's fakes over loopback HTTP: the Google API fake and the GCS
layer in front of fake-gcs-server answer each call after `--latency`, Cloud SQL operations
reach DONE after `--op-seconds`, a new service account stays invisible for `--sa-delay`.
The Kubernetes API fake answers at loopback speed; Helm's cluster commands go to the
recording stand-in (the release itself is not measured). Then it runs the same install
again, which must change nothing.

Prints `name: value` lines: wall time of the Google/Kubernetes phase (first call to last),
its critical path (bench/callgraph.py says how it is computed from the recorded calls) and
their ratio, the calls by kind, and for the re-run the reads per resource. Targets: first
run wall <= 1.2 x critical path; re-run 0 mutating calls, at most one read per resource.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.callgraph import Analysis, analyse  # noqa: E402
from tests.conftest import helm_binary  # noqa: E402
from tests.fakes.gcs import FakeGcs  # noqa: E402
from tests.fakes.google import FakeGoogle  # noqa: E402
from tests.fakes.helm_recorder import write_stand_in  # noqa: E402
from tests.fakes.kube import FakeKube, is_lock, write_kubeconfig  # noqa: E402

PROJECT, LOCATION, CLUSTER, INSTANCE = "bench-proj", "europe-west1", "prod", "pg"
INSTALL = ["install", "--database", "cloudsql", "--cloudsql-instance", INSTANCE,
           "--bucket", "gs://bench-artifacts/mlflow", "--create-bucket", "--identity", "gsa",
           "--yes", "--output", "json"]


def run_install(env: dict) -> dict:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "mlflow_helm", *INSTALL], env=env,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"install failed ({proc.returncode}):\n{proc.stderr}\n{proc.stdout}")
    result = json.loads(proc.stdout)
    result["_process_seconds"] = time.monotonic() - started
    return result


def report(prefix: str, a: Analysis, process_seconds: float) -> None:
    print(f"{prefix}_process_seconds: {process_seconds:.2f}")
    print(f"{prefix}_wall_seconds: {a.wall:.2f}")
    print(f"{prefix}_critical_path_seconds: {a.critical:.2f}")
    print(f"{prefix}_wall_over_critical_path: {a.ratio:.2f}")
    print(f"{prefix}_calls_read: {a.reads}")
    print(f"{prefix}_calls_mutating: {a.mutating}")
    print(f"{prefix}_calls_wasted: {a.wasted}")
    if a.waste:
        print(f"{prefix}_wasted_calls: "
              + ", ".join(f"{what} x{n}" for what, n in sorted(a.waste.items())))
    steps = " -> ".join(f"{n.label()} [{n.finish:.2f}]" for n in a.chain)
    print(f"{prefix}_critical_path: {steps}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.1, help="seconds per Google call")
    parser.add_argument("--op-seconds", type=float, default=2.0,
                        help="seconds a Cloud SQL operation takes to reach DONE")
    parser.add_argument("--sa-delay", type=float, default=1.0,
                        help="seconds a new service account stays invisible")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        root = Path(tmp)
        google = FakeGoogle(op_seconds=args.op_seconds, sa_delay=args.sa_delay,
                            latency=args.latency)
        google.add_project(PROJECT, number="123456789012")
        google.add_cluster(PROJECT, LOCATION, CLUSTER)
        google.add_instance(PROJECT, INSTANCE, region=LOCATION,
                            ip_types=("PRIMARY", "PRIVATE"))
        gcs = FakeGcs(project_number="123456789012", latency=args.latency)
        kube = FakeKube()
        google_url, gcs_url, kube_url = google.serve(), gcs.start(root / "gcs.log"), kube.serve()
        try:
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith(("HELM_", "MLFLOW_HELM_", "CLOUDSDK_"))}
            env.update(
                MLFLOW_HELM_GOOGLE_API_BASE=google_url, STORAGE_EMULATOR_HOST=gcs_url,
                KUBECONFIG=str(write_kubeconfig(root / "kubeconfig", kube_url,
                                                f"gke_{PROJECT}_{LOCATION}_{CLUSTER}")),
                HELM_BIN=str(write_stand_in(root / "bin" / "helm")), REAL_HELM=helm_binary("4"),
                HELM_RECORD=str(root / "helm.jsonl"), HELM_STATE=str(root / "helm.json"),
                HELM_TEST_RESULT="pass", PYTHONPATH=str(REPO),
                HELM_CACHE_HOME=str(root / "cache"), HELM_CONFIG_HOME=str(root / "config"),
                HELM_DATA_HOME=str(root / "data"))

            def calls() -> list:
                """Our calls: Helm's own reads of its release (User-Agent Helm/…) belong to
                the release, which is not measured here; nor is the run's lock (its Lease,
                created and deleted by every run: is_lock), counted apart."""
                ours = [c for c in kube.calls
                        if not c.agent.startswith("Helm/") and not is_lock(c)]
                return [*google.calls, *gcs.calls, *ours]

            print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, "
                  f"Python {platform.python_version()}")
            print(f"google_call_latency_seconds: {args.latency}")
            print(f"cloudsql_operation_seconds: {args.op_seconds}")
            print(f"service_account_invisible_seconds: {args.sa_delay}")

            first = run_install(env)
            changed = sum(1 for c in first["changes"] if c["action"] != "unchanged")
            a = analyse(calls(), args.op_seconds, args.sa_delay)
            print(f"first_run_changes: {changed}")
            report("first_run", a, first["_process_seconds"])

            google.calls.clear()
            gcs.calls.clear()
            kube.calls.clear()
            second = run_install(env)
            changed = sum(1 for c in second["changes"] if c["action"] != "unchanged")
            b = analyse(calls(), args.op_seconds, args.sa_delay)
            print(f"rerun_changes: {changed}")
            report("rerun", b, second["_process_seconds"])
            worst, most = b.reads_by_resource.most_common(1)[0]
            print(f"rerun_resources_read: {len(b.reads_by_resource)}")
            print(f"rerun_most_read_resource: {worst} ({most} reads)")
            print(f"first_run_wall_over_critical_path: {a.ratio:.2f}")
            print(f"rerun_mutating_calls: {b.mutating}")
            lock = [c for c in kube.calls if is_lock(c)]
            print(f"rerun_lock_calls: {len(lock)} ("
                  + ", ".join(f"{c.method} {c.status}" for c in lock)
                  + "; the run's Lease, excluded from the figures above)")
            print(f"rerun_reads_per_resource: {b.reads_per_resource:.2f}")
        finally:
            google.close()
            gcs.close()
            kube.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
