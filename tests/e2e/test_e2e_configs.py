"""Each configuration, installed as a cluster would: database and bucket provisioned, migration
Job and server pod started together, then the chart's own helm test must pass against it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from e2e_client import run_client
from e2e_kube import http_get
from e2e_release import Database, secret

DEFAULT_EXPERIMENT = "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default"
CI_DIR = Path(__file__).resolve().parents[2] / "charts" / "mlflow" / "ci"
GSA = "mlflow-sa@proj-e2e.iam.gserviceaccount.com"
INSTANCE = "proj-e2e:europe-west1:mlflow"


@dataclass
class Config:
    id: str
    values: dict = field(default_factory=dict)
    values_files: list[Path] = field(default_factory=list)
    extra_objects: list[dict] = field(default_factory=list)
    database: Database | None = None
    external_hosts: dict[str, str] = field(default_factory=dict)
    expect_artifacts: str = "served"  # or "direct"

    def release(self, factory):
        """This configuration's release, made by a release factory fixture."""
        return factory(
            self.id,
            values=self.values,
            values_files=self.values_files,
            extra_objects=self.extra_objects,
            database=self.database,
            external_hosts=self.external_hosts,
        )


def cloudsql(engine: str, auth: str) -> Config:
    values: dict = {
        "database": {
            "type": "cloudsql",
            "cloudsql": {"instanceConnectionName": INSTANCE, "engine": engine, "auth": auth},
        },
        "serviceAccount": {"gcpServiceAccount": GSA},
    }
    extra = []
    if auth == "password":
        values["database"]["cloudsql"]["existingSecret"] = "mlflow-cloudsql"
        extra.append(secret("mlflow-cloudsql", password="Cl0udSqlPw-e2e"))
        db = Database(engine, "mlflowdb", "mlflow", "Cl0udSqlPw-e2e", cloudsql=True)
    else:
        # No database.cloudsql.user: the chart derives the IAM user from
        # serviceAccount.gcpServiceAccount.
        # The IAM user Cloud SQL creates for the service account: PostgreSQL drops
        # ".gserviceaccount.com", MySQL keeps the name before "@".
        user = (
            GSA.removesuffix(".gserviceaccount.com") if engine == "postgres" else GSA.split("@")[0]
        )
        db = Database(engine, "mlflowdb", user, None, cloudsql=True)
    return Config(f"cloudsql-{engine}-{auth}", values, extra_objects=extra, database=db)


CONFIGS = [
    cloudsql("postgres", "password"),
    cloudsql("postgres", "iam"),
    cloudsql("mysql", "password"),
    cloudsql("mysql", "iam"),
    Config(
        "external-postgres-password",
        {
            "database": {
                "type": "external",
                "external": {
                    "host": "pg.db.example.internal",
                    "port": 6432,
                    "database": "tracking",
                    "user": "tracker",
                    "existingSecret": "mlflow-external-db",
                },
            }
        },
        extra_objects=[secret("mlflow-external-db", password="Ext$(NOT_A_VAR)pw'\"%")],
        database=Database("postgres", "tracking", "tracker", "Ext$(NOT_A_VAR)pw'\"%"),
        external_hosts={"pg.db.example.internal:6432": "postgres"},
    ),
    Config(
        "external-uri-key",
        {
            "database": {
                "type": "external",
                "external": {"existingSecret": "mlflow-external-uri", "uriKey": "uri"},
            }
        },
        extra_objects=[
            secret(
                "mlflow-external-uri",
                uri="postgresql+psycopg2://uriuser:Uri%40pw%3Ae2e@db.example.internal:5432/uridb",
            )
        ],
        database=Database("postgres", "uridb", "uriuser", "Uri@pw:e2e"),
        external_hosts={"db.example.internal:5432": "postgres"},
    ),
    # Also the Gateway API and Istio routes (their hosts must pass the Host check), and two
    # replicas whose wait-for-schema containers start with the Job on an empty database.
    Config(
        "gcs-proxied-routes-2-replicas",
        {
            "replicaCount": 2,
            "artifacts": {
                "type": "gcs",
                "gcs": {"bucket": "e2e-proxied", "path": "mlflow/artifacts"},
            },
            "serviceAccount": {"gcpServiceAccount": GSA},
            "httpRoute": {
                "enabled": True,
                "parentRefs": [{"name": "gateway", "namespace": "infra"}],
                "hostnames": ["mlflow.route.example.com"],
            },
            "virtualService": {"enabled": True, "hosts": ["mlflow.mesh.example.com"]},
        },
    ),
    # The server's /tmp as a generic ephemeral volume (proxied artifacts are buffered there),
    # and a ConfigMap from extraObjects mounted through server.extraVolumes, both named through
    # tpl: the pod must find what the templates name (a wrong name fails the pod's start).
    Config(
        "ephemeral-tmp-extra-objects",
        {
            "server": {
                "tmp": {"type": "ephemeral"},
                "extraVolumes": [{"name": "extra", "configMap": {
                    "name": '{{ include "mlflow.fullname" . }}-extra'}}],
                "extraVolumeMounts": [{"name": "extra", "mountPath": "/etc/mlflow-extra",
                                       "readOnly": True}],
            },
            "extraObjects": [{"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": '{{ include "mlflow.fullname" . }}-extra'},
                              "data": {"greeting": "hello from {{ .Release.Name }}"}}],
        },
    ),
    Config(
        "gcs-direct",
        {
            "artifacts": {"type": "gcs", "serve": False, "gcs": {"bucket": "e2e-direct"}},
            "serviceAccount": {"gcpServiceAccount": GSA},
        },
        expect_artifacts="direct",
    ),
]
# Every chart-testing values file, except one without values: test_e2e_default_release.py
# installs the chart with no values.
CI_FILES = {
    path: yaml.safe_load(path.read_text()) or {} for path in sorted(CI_DIR.glob("*-values.yaml"))
}
CONFIGS += [
    Config(f"ci-{path.name.removesuffix('-values.yaml')}", values_files=[path])
    for path, values in CI_FILES.items()
    if values
]


# These run in real containers instead (test_e2e_containers.py: the same checks, and the
# chart's security context, images and pod network besides); as processes they would add
# nothing but minutes.
IN_CONTAINERS = (
    "ci-auth",
    "ci-prefix-nodeport",
    "gcs-proxied-routes-2-replicas",
    "external-postgres-password",
    "cloudsql-postgres-password",
    "cloudsql-postgres-iam",
)


def _ci_sets(*keys: str) -> bool:
    for values in CI_FILES.values():
        node = values
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node:
            return True
    return False


# Features the configurations must cover; ci/ files usually do, else they get their own.
for config_id, keys, values in [
    ("basic-auth", ("auth", "enabled"), {"auth": {"enabled": True}}),
    ("static-prefix", ("server", "staticPrefix"), {"server": {"staticPrefix": "/mlflow"}}),
    ("metrics", ("metrics", "enabled"), {"metrics": {"enabled": True}}),
]:
    if not _ci_sets(*keys):
        CONFIGS.append(Config(config_id, values))


def route_hosts(objects: list[dict]) -> list[str]:
    hosts: list[str] = []
    for obj in objects:
        spec = obj.get("spec") or {}
        if obj["kind"] == "Ingress":
            hosts += [rule["host"] for rule in spec.get("rules") or [] if rule.get("host")]
        elif obj["kind"] == "HTTPRoute":
            hosts += spec.get("hostnames") or []
        elif obj["kind"] == "VirtualService":
            hosts += [h for h in spec.get("hosts") or [] if h != "*"]
    return hosts


# A client logs an artifact and reads it back; it prints where it went. Used for GCS written
# by clients themselves (gcs-direct) and through the server (test_e2e_containers.py).
ARTIFACT_ROUNDTRIP = r"""
import json, os, tempfile
import mlflow
with mlflow.start_run() as run:
    path = os.path.join(tempfile.mkdtemp(), "hello.txt")
    with open(path, "w") as f:
        f.write("written by the client")
    mlflow.log_artifact(path, artifact_path="direct")
local = mlflow.artifacts.download_artifacts(
    run_id=run.info.run_id, artifact_path="direct/hello.txt")
print(json.dumps({"run_id": run.info.run_id, "artifact_uri": run.info.artifact_uri,
                  "content": open(local).read()}))
"""


@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if c.id not in IN_CONTAINERS], ids=lambda c: c.id
)
def test_helm_test_passes(config: Config, release_factory) -> None:
    rel = config.release(release_factory)
    rel.install()
    code, output = rel.helm_test()
    assert code == 0, f"helm test failed:\n{output}\n{rel.logs()}"
    assert "helm test passed" in output
    # Every replica serves (only the Job migrated: the replicas waited for it).
    for port in rel.ports[1:]:
        status, body = http_get(port, rel.prefix() + DEFAULT_EXPERIMENT, rel.service_host())
        assert status == 200, f"replica on {port}: HTTP {status} {body[:300]!r}"
    # Clients that come through a route send its host name: the server must accept it.
    for host in route_hosts(rel.cluster.objects):
        status, body = rel.get(
            "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default", host=host
        )
        assert status == 200, f"Host {host} (a route's host): HTTP {status} {body[:300]!r}"
    if config.expect_artifacts == "direct":
        assert "artifact root" in output and "clients write to gs://" in output
        # Clients write to the bucket themselves (their own credentials; here the emulator).
        bucket = rel.buckets()[0]
        result = run_client(
            ARTIFACT_ROUNDTRIP,
            rel.tracking_uri(),
            rel.workdir / "client",
            env=rel.services.gcs.env(),
        )
        assert result["artifact_uri"].startswith(f"gs://{bucket}/")
        assert result["content"] == "written by the client"
        run_path = result["artifact_uri"].removeprefix(f"gs://{bucket}/")
        assert f"{run_path}/direct/hello.txt" in rel.services.gcs.objects(bucket)
    else:
        assert "artifact upload, download, delete" in output
