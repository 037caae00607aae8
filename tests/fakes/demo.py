"""`make demo`: the CLI's main job, end to end, with no cluster and no cloud account.

    python -m tests.fakes.demo [DIR]     # DIR keeps the fakes' logs (default: a temp dir)

Starts the fakes (tests/fakes/serve.py: Google APIs checked against their discovery
documents, the real fake-gcs-server, a Kubernetes API, the recording `helm` stand-in over
the real Helm 4), then runs, as a user would type them: an install with Cloud SQL and a new
bucket, the same install again (nothing to change), status, and uninstall --purge. Each
command's output is the CLI's own. Everything started is stopped at the end, on an error,
on Ctrl-C and on SIGTERM. Needs no pytest.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time

from tests.fakes.serve import fake_world, sigterm_as_interrupt
from tests.fakes.tools import ToolMissing

STEPS = [
    ("set up Cloud SQL, IAM, Workload Identity and a bucket, install the chart, helm test",
     ["install", "--database", "cloudsql", "--cloudsql-instance", "pg",
      "--bucket", "gs://acme-mlflow-artifacts", "--create-bucket", "--yes"]),
    ("the same again, months later, without the flags: nothing to change",
     ["install", "--yes"]),
    ("what exists, and whether it is healthy", ["status"]),
    ("remove the release and everything the first install created",
     ["uninstall", "--purge", "--yes"]),
]


def run(directory: str) -> int:
    with fake_world(directory, op_seconds=0.5) as (fakes, counts):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HELM_", "CLOUDSDK_", "GOOGLE_"))}
        env.update(fakes)
        # Helm's own state stays in DIR, never in the user's home.
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            env[var] = os.path.join(directory, var.lower())
        print(f"Fakes up in {directory}: project my-proj, GKE cluster prod "
              "(europe-west1), Cloud SQL instance pg.\n", flush=True)
        for why, args in STEPS:
            print(f"# {why}\n$ mlflow-helm {shlex.join(args)}", flush=True)
            done = subprocess.run([sys.executable, "-m", "mlflow_helm", *args], env=env)
            print(flush=True)
            if done.returncode:
                print(f"demo: `mlflow-helm {shlex.join(args)}` exited {done.returncode}; "
                      f"logs in {directory}", file=sys.stderr)
                return done.returncode
        c = counts()
        print(f"Google API calls: {sum(c['google'].values())}, GCS calls: "
              f"{sum(c['gcs'].values())}. Stopping the fakes.")
    return 0


def main(argv: list[str]) -> int:
    started = time.monotonic()
    keep = argv[0] if argv else None
    with tempfile.TemporaryDirectory(prefix="mlflow-helm-demo-") as tmp:
        directory = keep or tmp
        try:
            with sigterm_as_interrupt():
                code = run(directory)
        except KeyboardInterrupt:
            print("\ndemo: interrupted; every fake is stopped", file=sys.stderr)
            return 130
        except ToolMissing as exc:
            print(f"demo: {exc}", file=sys.stderr)
            return 2
    outcome = "done" if code == 0 else "failed"
    print(f"Demo {outcome} in {time.monotonic() - started:.0f}s; nothing is left running.")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
