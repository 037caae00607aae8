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

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.test_quickstart import Run
from tests.conftest import REPO_ROOT
from tests.fakes.serve import fake_world

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SAMPLE = re.compile(r"^<!-- sample: ([a-z0-9-]+) -->\n```text\n(.*?)^```$", re.M | re.S)
GKE_FLAGS = ["--database", "cloudsql", "--cloudsql-instance", "pg",
             "--bucket", "gs://acme-mlflow-artifacts", "--create-bucket"]


def doc_samples() -> dict[str, tuple[str, str]]:
    """ID -> (file, block)."""
    found: dict[str, tuple[str, str]] = {}
    for doc in DOCS:
        for match in SAMPLE.finditer(doc.read_text()):
            assert match.group(1) not in found, f"sample {match.group(1)} twice"
            found[match.group(1)] = (doc.name, match.group(2))
    return found


def normalize(text: str, home: str | None = None) -> str:
    if home:
        text = text.replace(home, "/root")
    text = re.sub(r"\[ *\d+\.\d+s\]", "[T]", text)
    text = re.sub(r"\(\d+\.\d+s\)", "(Ts)", text)
    text = re.sub(r"Done in \d+\.\d+s", "Done in Ts", text)
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


class Session:
    """One fake world, and the CLI run in it as a user runs it."""

    def __init__(self, directory: Path, fakes: dict) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HELM_", "CLOUDSDK_", "GOOGLE_", "MLFLOW_HELM_"))}
        env.update(fakes, PYTHONUNBUFFERED="1", MLFLOW_HELM_RETRY_BASE="0.005")
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            env[var] = str(directory / var.lower())
        self.env = env

    def __call__(self, *args: str, echo: bool = False, code: int = 0, **env: str) -> str:
        done = subprocess.run([sys.executable, "-m", "mlflow_helm", *args],
                              env={**self.env, **env},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              timeout=300)
        assert done.returncode == code, done.stdout
        return (f"$ mlflow-helm {' '.join(args)}\n" if echo else "") + done.stdout


def gke_session(directory: Path, op_seconds: float) -> dict[str, str]:
    """The GKE guide's sequence (docs/cli.md), in order, in one world."""
    with fake_world(directory, op_seconds=op_seconds) as (fakes, _counts):
        cli = Session(directory, fakes)
        out = {"gke-plan": cli("plan", *GKE_FLAGS)}
        out["gke-first-install"] = cli("install", *GKE_FLAGS)
        out["gke-install-again"] = cli("install", *GKE_FLAGS)
        out["gke-status"] = cli("status")
        out["gke-test"] = cli("test")
        out["gke-test-failure"] = cli("test", code=5, HELM_TEST_RESULT="fail")
        out["gke-plan-mysql-iam"] = cli("plan", "-n", "ml", "--database", "cloudsql",
                                        "--cloudsql-instance", "my-sql", "--db-auth", "iam")
        out["gke-errors"] = (cli("install", "--bucket", "gs://Bad", code=2)
                             + cli("install", "--database", "cloudsql",
                                   "--cloudsql-instance", "nope", code=2))
        out["gke-uninstall"] = cli("uninstall", echo=True)
    return out


def local_session(directory: Path, op_seconds: float) -> dict[str, str]:
    with fake_world(directory, op_seconds=op_seconds) as (fakes, _counts):
        return {"install-local": Session(directory, fakes)("install", "--local")}


@pytest.fixture(scope="module")
def gke(tmp_path_factory) -> dict[str, str]:
    return gke_session(tmp_path_factory.mktemp("gke"), op_seconds=0.05)


@pytest.fixture(scope="module")
def local(tmp_path_factory) -> dict[str, str]:
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
    "gke": ("gke-plan", "gke-first-install", "gke-install-again", "gke-status", "gke-test",
            "gke-test-failure", "gke-plan-mysql-iam", "gke-errors", "gke-uninstall"),
    "local": ("install-local",),
    "quickstart": ("quickstart-no-cluster", "quickstart-kind"),
}
PRODUCED = {sample: session for session, samples in SESSIONS.items() for sample in samples}


def test_every_sample_has_a_producer():
    assert sorted(doc_samples()) == sorted(PRODUCED)


@pytest.mark.parametrize("sample", sorted(PRODUCED))
def test_sample_is_the_real_output(sample, request, tmp_path):
    where, block = doc_samples()[sample]
    home = None
    if PRODUCED[sample] == "quickstart":
        actual, home = quickstart(request.getfixturevalue("world"), tmp_path, sample)
    else:
        actual = request.getfixturevalue(PRODUCED[sample])[sample]
    assert_coherent_times(block, f"{where}, sample {sample}")
    assert_coherent_times(actual, f"the output for sample {sample}")
    assert normalize(block) == normalize(actual, home), \
        f"{where}, sample {sample}: the block differs from what the tool printed:\n{actual}"


def write(directory: Path) -> None:
    """Rewrite the fake-world samples in the docs with fresh output, timed as the fakes of
    `python -m tests.fakes.serve` are (a Cloud SQL operation takes 2 s). The quickstart's
    samples need the pytest fixtures; their test shows any difference."""
    fresh = {**gke_session(directory / "gke", 2.0), **local_session(directory / "local", 2.0)}
    for doc in DOCS:
        text = doc.read_text()

        def replace(match: re.Match) -> str:
            body = fresh.get(match.group(1), match.group(2))
            return f"<!-- sample: {match.group(1)} -->\n```text\n{body}```"

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
