"""Fixtures for the CLI tests: the fakes on loopback ports, and a Context wired to them.

Each test gets its own fakes (random ports, temp dirs), so tests run in parallel (-n 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mlflow_helm.context import Context
from mlflow_helm.gcp import GoogleApis
from mlflow_helm.helm import Helm
from mlflow_helm.kube import Kube
from mlflow_helm.options import Options, validate
from mlflow_helm.retry import RetryPolicy
from tests.conftest import helm_binary
from tests.fakes.gcs import FakeGcs
from tests.fakes.google import FakeGoogle
from tests.fakes.helm_recorder import write_stand_in
from tests.fakes.kube import FakeKube, write_kubeconfig

PROJECT = "my-proj"
LOCATION = "europe-west1"
CLUSTER = "prod"
GKE_CONTEXT = f"gke_{PROJECT}_{LOCATION}_{CLUSTER}"
FAST = RetryPolicy(attempts=6, base=0.002, cap=0.02, poll_interval=0.01, poll_timeout=20,
                   consistency_timeout=5)


@dataclass
class World:
    """The fakes, the recorder's files, and a factory for contexts that use them."""

    google: FakeGoogle
    gcs: FakeGcs
    kube: FakeKube
    google_url: str
    gcs_url: str
    kubeconfig: Path
    helm_bin: Path
    record: Path
    state: Path
    env: dict = field(default_factory=dict)
    helm_major: str = "4"
    said: list = field(default_factory=list)

    def options(self, **kw) -> Options:
        kw.setdefault("helm_bin", str(self.helm_bin))
        kw.setdefault("kubeconfig", str(self.kubeconfig))
        kw.setdefault("timeout", "")  # the default: long enough for the migration
        opts = Options(**kw)
        from mlflow_helm.steps.release import chart_names

        opts.name_values = chart_names(opts)
        return validate(opts)

    def context(self, opts: Options | None = None, **kw) -> Context:
        opts = opts or self.options(**kw)
        apis = GoogleApis(base_url=self.google_url, storage_url=self.gcs_url, retry=FAST)
        apis.progress = self.said.append
        return Context(
            opts=opts, apis=apis,
            kube=Kube(opts.kube_context, opts.kubeconfig, FAST),
            helm=Helm(opts.helm_bin, opts.kube_context, opts.kubeconfig, opts.timeout),
            say=self.said.append)

    def helm_calls(self, command: str | None = None) -> list[dict]:
        import json

        if not self.record.exists():
            return []
        calls = [json.loads(line) for line in self.record.read_text().splitlines()]
        return [c for c in calls if command is None or c["argv"][0] == command]

    def mutating(self) -> list:
        return self.google.mutating_calls() + [c for c in self.gcs.calls if c.mutating] + \
            self.kube.mutating_calls()


@pytest.fixture
def world(request, tmp_path, monkeypatch) -> World:
    """The fakes, with the real Helm 4 behind the stand-in; parametrize with
    `@pytest.mark.parametrize("world", ["3", "4"], indirect=True)` for either major."""
    major = getattr(request, "param", "4")
    google = FakeGoogle(op_seconds=0.03)
    google.add_project(PROJECT, number="123456789012")
    google.add_cluster(PROJECT, LOCATION, CLUSTER)
    google.add_instance(PROJECT, "pg", region=LOCATION, version="POSTGRES_16",
                        ip_types=("PRIMARY", "PRIVATE"))
    google.add_instance(PROJECT, "my-sql", region=LOCATION, version="MYSQL_8_0",
                        ip_types=("PRIMARY",), binlog=True)
    google_url = google.serve()
    gcs = FakeGcs(project_number="123456789012")
    gcs_url = gcs.start(tmp_path / "fake-gcs.log")
    kube = FakeKube()
    kube_url = kube.serve()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube_url, GKE_CONTEXT)
    # Only the calls that need a cluster go to the recorder; the rest is the real Helm.
    helm_bin = write_stand_in(tmp_path / "bin" / "helm")
    record, state = tmp_path / "helm-calls.jsonl", tmp_path / "helm-state.json"
    env = {"REAL_HELM": helm_binary(major), "HELM_RECORD": str(record),
           "HELM_STATE": str(state), "HELM_TEST_RESULT": "pass",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Helm's own state goes to the temp dir, never to the user's home.
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for var in ("HELM_NAMESPACE", "HELM_KUBECONTEXT", "HELM_BIN", "HELM_DEBUG",
                "CLOUDSDK_CORE_PROJECT", "GOOGLE_CLOUD_PROJECT", "STORAGE_EMULATOR_HOST"):
        monkeypatch.delenv(var, raising=False)
    w = World(google, gcs, kube, google_url, gcs_url, kubeconfig, helm_bin, record, state, env,
              helm_major=major)
    yield w
    google.close()
    gcs.close()
    kube.close()
    # Every request the CLI sent was one the discovery documents allow (tests/fakes/
    # discovery.py); a test that wants a rejection takes it off the list itself.
    assert google.rejected == [], f"requests the real API would reject: {google.rejected}"


def cli_env(world: World, **extra) -> dict:
    """The environment the CLI (CliRunner or subprocess) needs to reach the fakes."""
    env = dict(os.environ)
    env.update(world.env)
    env.update(MLFLOW_HELM_GOOGLE_API_BASE=world.google_url,
               STORAGE_EMULATOR_HOST=world.gcs_url, KUBECONFIG=str(world.kubeconfig),
               MLFLOW_HELM_RETRY_BASE="0.005", HELM_BIN=str(world.helm_bin))
    env.update(extra)
    return env
