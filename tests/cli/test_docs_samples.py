"""The README's and docs' output samples are what the tool prints (issue 13, item 7).

A sample is a ```text block right after a `<!-- sample: ID -->` line in README.md or
docs/*.md. Each ID has a producer here that runs the real commands the way the docs say
(the same flags, in the same order, as real subprocesses) against the repository's fakes
(tests/fakes/serve.py's world: project my-proj, GKE cluster prod, Cloud SQL instances pg and
my-sql, the fake-gcs-server, a Kubernetes API, the recording `helm` over the real Helm 4) and
the block must equal its output, after `normalize`: elapsed times (`[   1.2s]`, `(0.4s)`,
`Done in 5.3s`) are the machine's; steps that run in parallel finish in either order, so a
run of `done` lines compares as a set; and the temp HOME reads as /root, where the README's
runs were made. Where a sample has times, they must also be coherent: `Done in` is never
earlier than the last progress stamp. stdout and stderr are one stream, in the order they
were written (PYTHONUNBUFFERED), as a terminal shows them.

A sample without a producer, or a producer without its sample, fails `test_every_sample_has_
a_producer`; so a sample is never silently unchecked. After a change of output,
`python -m tests.cli.test_docs_samples --write` rewrites the fake-world samples.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.cli.test_quickstart import Run
from tests.conftest import REPO_ROOT
from tests.fakes.serve import fake_world

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SAMPLE = re.compile(r"^<!-- sample: ([a-z0-9-]+) -->\n```text\n(.*?)^```\n(?:\(exit (\d+)\)\n)?",
                    re.M | re.S)
GKE_FLAGS = ["--database", "cloudsql", "--cloudsql-instance", "pg",
             "--bucket", "gs://acme-mlflow-artifacts", "--create-bucket"]


def doc_samples() -> dict[str, tuple[str, str, int | None]]:
    """ID -> (file, block, the exit code the doc states after it, if it does)."""
    found: dict[str, tuple[str, str, int | None]] = {}
    for doc in DOCS:
        for match in SAMPLE.finditer(doc.read_text()):
            assert match.group(1) not in found, f"sample {match.group(1)} twice"
            code = int(match.group(3)) if match.group(3) else None
            found[match.group(1)] = (doc.name, match.group(2), code)
    return found


def normalize(text: str, home: str | None = None) -> str:
    if home:
        text = text.replace(home, "/root")
    text = re.sub(r"\[ *\d+\.\d+s\]", "[T]", text)
    text = re.sub(r"\(\d+\.\d+s\)", "(Ts)", text)
    text = re.sub(r"Done in \d+\.\d+s", "Done in Ts", text)
    text = re.sub(r"renewed \d+s ago", "renewed Ns ago", text)
    lines, done = [], []
    for line in text.strip("\n").splitlines():
        if line.startswith("[T] done "):
            done.append(line.rstrip())
            continue
        lines += [*sorted(done), line.rstrip()]
        done = []
    return "\n".join(lines + sorted(done)) + "\n"


def assert_coherent_times(text: str, what: str) -> None:
    stamps = [float(t) for t in re.findall(r"^\[ *(\d+\.\d+)s\]", text, re.M)]
    total = re.search(r"^Done in (\d+\.\d+)s", text, re.M)
    if stamps and total:
        assert float(total.group(1)) >= max(stamps), \
            f"{what}: 'Done in {total.group(1)}s' is earlier than the stamp {max(stamps)}s"


class Output(str):
    """What a command printed, and its exit code."""
    code: int


class Session:
    """One fake world, and the CLI run in it as a user runs it."""

    def __init__(self, directory: Path, fakes: dict) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HELM_", "CLOUDSDK_", "GOOGLE_", "MLFLOW_HELM_"))}
        env.update(fakes, PYTHONUNBUFFERED="1", MLFLOW_HELM_RETRY_BASE="0.005")
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            env[var] = str(directory / var.lower())
        self.env = env
        self.kube = yaml.safe_load(Path(fakes["KUBECONFIG"]).read_text())[
            "clusters"][0]["cluster"]["server"]

    def __call__(self, *args: str, code: int = 0, **env: str) -> Output:
        done = subprocess.run([sys.executable, "-m", "mlflow_helm", *args],
                              env={**self.env, **env}, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
        assert done.returncode == code, f"mlflow-helm {shlex.join(args)}: {done.stdout}"
        return self.output(f"$ mlflow-helm {shlex.join(args)}\n{done.stdout}", done.returncode)

    @staticmethod
    def output(text: str, code: int) -> Output:
        out = Output(text)
        out.code = code
        return out

    def interrupted(self, *args: str, after_done: int) -> Output:
        """The command, with SIGINT once `after_done` steps have printed `done` (Ctrl-C
        while the next, slower one runs)."""
        proc = subprocess.Popen([sys.executable, "-m", "mlflow_helm", *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines, done = [], 0
        for line in proc.stdout:
            lines.append(line)
            done += "] done " in line
            if done == after_done:
                proc.send_signal(signal.SIGINT)
                break
        lines += proc.stdout.readlines()
        proc.wait(timeout=120)
        return self.output(f"$ mlflow-helm {shlex.join(args)}\n" + "".join(lines),
                           proc.returncode)

    def hold_lock(self, namespace: str, release: str, holder: str, since: str) -> str:
        """Another run's Lease, renewed a second ago (the Kubernetes API over HTTP)."""
        renewed = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ")
        url = f"{self.kube}/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"
        body = {"metadata": {"name": f"mlflow-helm.lock.{release}"},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": 60,
                         "acquireTime": since, "renewTime": renewed}}
        request = urllib.request.Request(url, json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()
        return f"{url}/mlflow-helm.lock.{release}"


def delete(url: str) -> None:
    urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10).close()


def gke_session(directory: Path, op_seconds: float) -> dict[str, Output]:
    """docs/cli.md's GKE guide and install-record story, in the order the docs tell it, in
    one world."""
    with fake_world(directory, op_seconds=op_seconds) as (fakes, _counts):
        cli = Session(directory, fakes)
        out = {"gke-plan": cli("plan", *GKE_FLAGS)}
        out["gke-first-install"] = cli("install", *GKE_FLAGS)
        out["gke-install-again"] = cli("install", *GKE_FLAGS)
        out["gke-plan-mysql-iam"] = cli("plan", "-n", "ml", "--database", "cloudsql",
                                        "--cloudsql-instance", "my-sql", "--db-auth", "iam")
        out["gke-identity-direct"] = cli("plan", "-n", "ml", "--identity", "direct",
                                         "--database", "cloudsql", "--cloudsql-instance", "pg",
                                         "--bucket", "gs://acme-mlflow-artifacts")
        out["gke-status"] = cli("status")
        out["gke-test"] = cli("test")
        out["gke-test-failure"] = cli("test", code=5, HELM_TEST_RESULT="fail")
        out["gke-errors"] = cli.output(
            cli("install", "--bucket", "gs://Bad", code=2).split("\n", 1)[1]
            + cli("install", "--database", "cloudsql", "--cloudsql-instance", "nope",
                  code=2).split("\n", 1)[1], 2)
        # The install record: a --set is recorded; the same again changes nothing.
        out["record-set"] = cli("install", "--set", "server.workers=4", "--skip-tests")
        out["record-set-again"] = cli("install", "--set", "server.workers=4", "--skip-tests")
        out["record-move-refused"] = cli("install", "--bucket", "gs://other-artifacts",
                                         "--create-bucket", "--skip-tests", code=2)
        out["record-plan"] = cli("plan")
        out["shared-team-b"] = cli("install", "-n", "team-b", "--database", "cloudsql",
                                   "--cloudsql-instance", "pg", "--bucket",
                                   "gs://acme-mlflow-artifacts/team-b", "--skip-tests")
        out["shared-not-yours"] = cli("install", "-n", "team-c", "--database", "cloudsql",
                                      "--cloudsql-instance", "pg", "--database-name",
                                      "mlflow_mlflow_mlflow", "--db-user",
                                      "mlflow_mlflow_mlflow", "--skip-tests", code=2)
        out["purge-dry-run"] = cli("uninstall", "-n", "team-b", "--purge", "--dry-run")
        out["purge"] = cli("uninstall", "-n", "team-b", "--purge", "--yes")
        # team-d runs as team-c's account, on team-c's bucket: both adopted.
        cli("install", "-n", "team-c", "--gsa", "shared-mlflow-c", "--bucket",
            "gs://team-c-artifacts", "--create-bucket", "--skip-tests")
        cli("install", "-n", "team-d", "--gsa", "shared-mlflow-c", "--bucket",
            "gs://team-c-artifacts", "--skip-tests")
        out["purge-still-used"] = cli("uninstall", "-n", "team-c", "--purge", "--yes")
        cli("uninstall", "-n", "team-d", "--purge", "--yes")
        out["purge-finishes"] = cli("uninstall", "-n", "team-c", "--purge", "--yes")
        out["status-not-installed"] = cli("status", "-n", "team-b", code=6)
        lease = cli.hold_lock("mlflow", "mlflow", "ci@runner-7 pid 4242",
                              "2026-12-03T16:31:14.813585Z")
        out["lock-held"] = cli("install", "--skip-tests", code=7)
        delete(lease)
        out["gke-uninstall"] = cli("uninstall")
        out["status-record-kept"] = cli("status", code=6)
    return out


def interrupt_session(directory: Path, op_seconds: float) -> dict[str, Output]:
    """Ctrl-C while Cloud SQL creates the database, then the re-run the CLI names."""
    slow = max(op_seconds, 3.0)  # the database takes that long: Ctrl-C lands inside it
    with fake_world(directory, op_seconds=slow) as (fakes, _counts):
        cli = Session(directory, fakes)
        out = {"interrupt": cli.interrupted(
            "install", "-n", "team-b", "--database", "cloudsql", "--cloudsql-instance", "pg",
            "--bucket", "gs://team-b-artifacts", "--create-bucket", "--skip-tests",
            after_done=6)}
        # The operation started goes on on the instance; by the time the user types the
        # re-run it has finished, and the re-run finds the database.
        time.sleep(slow + 0.5)
        out["interrupt-resume"] = cli("install", "mlflow", "-n", "team-b", "--skip-tests")
    return out


def rollback_session(directory: Path, op_seconds: float) -> dict[str, Output]:
    """An upgrade from MLflow 2.22 (the release as that chart left it), then rollbacks."""
    with fake_world(directory, op_seconds=op_seconds) as (fakes, _counts):
        cli = Session(directory, fakes)
        flags = ("--database", "cloudsql", "--cloudsql-instance", "pg", "--skip-tests")
        cli("install", *flags)
        state_file = Path(fakes["HELM_STATE"])
        state = json.loads(state_file.read_text())
        state["mlflow/mlflow"]["appVersion"] = "2.22.0"
        state_file.write_text(json.dumps(state))
        out = {"rollback-upgrade": cli("install", *flags)}
        out["rollback-refused"] = cli("rollback", code=2)
        out["rollback-after-restore"] = cli("rollback", "--after-restore")
    return out


def local_session(directory: Path, op_seconds: float) -> dict[str, Output]:
    with fake_world(directory, op_seconds=op_seconds) as (fakes, _counts):
        return {"install-local": Session(directory, fakes)("install", "--local")}


@pytest.fixture(scope="module")
def gke(tmp_path_factory) -> dict[str, Output]:
    return gke_session(tmp_path_factory.mktemp("gke"), op_seconds=0.05)


@pytest.fixture(scope="module")
def interrupt(tmp_path_factory) -> dict[str, Output]:
    return interrupt_session(tmp_path_factory.mktemp("interrupt"), op_seconds=0.05)


@pytest.fixture(scope="module")
def rollback(tmp_path_factory) -> dict[str, Output]:
    return rollback_session(tmp_path_factory.mktemp("rollback"), op_seconds=0.05)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict[str, Output]:
    return local_session(tmp_path_factory.mktemp("local"), op_seconds=0.05)


def quickstart(world, tmp_path, sample: str) -> tuple[str, str]:
    """The quickstart's own lines: with nothing to make a cluster with (as on this machine),
    and with kind and Docker (tests/cli/test_quickstart.py's stand-ins)."""
    run = Run(tmp_path, world, () if sample == "quickstart-no-cluster" else ("kind", "docker"))
    out = run()
    assert out.returncode == (2 if sample == "quickstart-no-cluster" else 0), out.stderr
    mine = "".join(line + "\n" for line in out.stderr.splitlines()
                   if line.startswith("quickstart:"))
    return mine, str(run.home)


SESSIONS = {
    "gke": ("gke-plan", "gke-first-install", "gke-install-again", "gke-plan-mysql-iam",
            "gke-identity-direct", "gke-status", "gke-test", "gke-test-failure", "gke-errors",
            "record-set", "record-set-again", "record-move-refused", "record-plan",
            "shared-team-b", "shared-not-yours", "purge-dry-run", "purge", "purge-still-used",
            "purge-finishes", "status-not-installed", "lock-held", "gke-uninstall",
            "status-record-kept"),
    "interrupt": ("interrupt", "interrupt-resume"),
    "local": ("install-local",),
    "rollback": ("rollback-upgrade", "rollback-refused", "rollback-after-restore"),
    "quickstart": ("quickstart-no-cluster", "quickstart-kind"),
}
PRODUCED = {sample: session for session, samples in SESSIONS.items() for sample in samples}


def as_shown(block: str, actual: str) -> str:
    """The output as the doc shows it: with the `$ command` line only where the doc has
    one, and cut where the doc cuts it with a last line `…`."""
    if not block.startswith("$ ") and actual.startswith("$ "):
        actual = actual.split("\n", 1)[1]
    lines = block.rstrip("\n").splitlines()
    if lines and lines[-1].strip() == "…":
        kept = actual.splitlines()[:len(lines) - 1]
        actual = "\n".join([*kept, lines[-1]]) + "\n"
    return actual


def test_every_sample_has_a_producer():
    assert sorted(doc_samples()) == sorted(PRODUCED)


@pytest.mark.parametrize("sample", sorted(PRODUCED))
def test_sample_is_the_real_output(sample, request, tmp_path):
    where, block, code = doc_samples()[sample]
    home = None
    if PRODUCED[sample] == "quickstart":
        actual, home = quickstart(request.getfixturevalue("world"), tmp_path, sample)
    else:
        actual = request.getfixturevalue(PRODUCED[sample])[sample]
        if code is not None:
            assert actual.code == code, f"{where}, sample {sample}: says (exit {code})"
        actual = as_shown(block, actual)
    assert_coherent_times(block, f"{where}, sample {sample}")
    assert_coherent_times(actual, f"the output for sample {sample}")
    assert normalize(block) == normalize(actual, home), \
        f"{where}, sample {sample}: the block differs from what the tool printed:\n{actual}"


def write(directory: Path) -> None:
    """Rewrite the fake-world samples in the docs with fresh output, timed as the fakes of
    `python -m tests.fakes.serve` are (a Cloud SQL operation takes 2 s). The quickstart's
    samples need the pytest fixtures; their test shows any difference."""
    fresh = {**gke_session(directory / "gke", 2.0),
             **interrupt_session(directory / "interrupt", 2.0),
             **local_session(directory / "local", 2.0),
             **rollback_session(directory / "rollback", 2.0)}
    for doc in DOCS:
        text = doc.read_text()

        def replace(match: re.Match) -> str:
            sample, block = match.group(1), match.group(2)
            if sample not in fresh:
                return match.group(0)
            exit_line = f"(exit {fresh[sample].code})\n" if match.group(3) else ""
            return (f"<!-- sample: {sample} -->\n```text\n{as_shown(block, fresh[sample])}```\n"
                    + exit_line)

        new = SAMPLE.sub(replace, text)
        if new != text:
            doc.write_text(new)
            print(f"rewrote samples in {doc.relative_to(REPO_ROOT)}")


if __name__ == "__main__":  # python -m tests.cli.test_docs_samples --write
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.cli.test_docs_samples --write")
    with tempfile.TemporaryDirectory(prefix="mlflow-helm-samples-") as tmp:
        write(Path(tmp))
