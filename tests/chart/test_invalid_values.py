"""Values the chart must refuse, each with a message that names the offending value.

Schema violations come from values.schema.json (Helm 3 names a value `database.type`, Helm 4
`/database/type`); combinations come from templates/_validate.tpl. Both versions must refuse.
"""

from __future__ import annotations

import pytest

from .modes import CLOUDSQL_PG_IAM, CLOUDSQL_PG_PASSWORD, EXTERNAL_PG, GCS_SERVED, GSA, merge
from .render import render_error


def named(stderr: str, path: str) -> bool:
    """Does Helm's error name this value, dotted (Helm 3, our fail messages) or as a JSON
    pointer (Helm 4's schema errors)?"""
    pointer = "/" + path.replace(".", "/")
    return path in stderr or f"'{pointer}'" in stderr or f"{pointer}'" in stderr


def unknown_key_named(stderr: str, parent: str, key: str) -> bool:
    """An unknown key: the message names the key and where it is."""
    return key in stderr and (not parent or named(stderr, parent))


# (id, values, value the message must name)
SCHEMA_CASES = [
    ("database-type-enum", {"database": {"type": "sqlite"}}, "database.type"),
    ("artifacts-type-enum", {"artifacts": {"type": "s3"}}, "artifacts.type"),
    ("replica-count-type", {"replicaCount": "two"}, "replicaCount"),
    ("replica-count-negative", {"replicaCount": -1}, "replicaCount"),
    ("service-type-enum", {"service": {"type": "ExternalName"}}, "service.type"),
    ("service-port-negative", {"service": {"port": -1}}, "service.port"),
    ("service-port-too-big", {"service": {"port": 70000}}, "service.port"),
    # (Any port: clusters can move --service-node-port-range off 30000-32767.)
    ("node-port-not-a-port", {"service": {"type": "NodePort", "nodePort": 0}},
     "service.nodePort"),
    ("cloudsql-engine-enum",
     merge(CLOUDSQL_PG_PASSWORD, {"database": {"cloudsql": {"engine": "postgresql"}}}),
     "database.cloudsql.engine"),
    ("cloudsql-auth-enum",
     merge(CLOUDSQL_PG_PASSWORD, {"database": {"cloudsql": {"auth": "token"}}}),
     "database.cloudsql.auth"),
    ("cloudsql-iptype-enum",
     merge(CLOUDSQL_PG_PASSWORD, {"database": {"cloudsql": {"ipType": "internal"}}}),
     "database.cloudsql.ipType"),
    ("external-engine-enum", merge(EXTERNAL_PG, {"database": {"external": {"engine": "oracle"}}}),
     "database.external.engine"),
    ("auth-permission-enum", {"auth": {"enabled": True, "defaultPermission": "WRITE"}},
     "auth.defaultPermission"),
    ("workers-zero", {"server": {"workers": 0}}, "server.workers"),
    ("pull-policy-enum", {"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy"),
    ("enabled-not-boolean", {"ingress": {"enabled": "yes"}}, "ingress.enabled"),
    ("name-override-not-dns", {"nameOverride": "Bad_Name"}, "nameOverride"),
    ("extra-args-not-list", {"server": {"extraArgs": "--foo"}}, "server.extraArgs"),
    ("postgresql-driver-enum", {"database": {"postgresqlDriver": "asyncpg"}},
     "database.postgresqlDriver"),
]

UNKNOWN_KEY_CASES = [
    ("unknown-top-level-key", {"replicas": 2}, "", "replicas"),
    ("unknown-server-key", {"server": {"worker": 2}}, "server", "worker"),
    ("unknown-cloudsql-key",
     merge(CLOUDSQL_PG_PASSWORD, {"database": {"cloudsql": {"instance": "x"}}}),
     "database.cloudsql", "instance"),
]

VALIDATE_CASES = [
    ("image-registry-with-scheme",
     {"global": {"imageRegistry": "https://europe-docker.pkg.dev/p/mirror"}},
     "global.imageRegistry"),
    ("image-registry-trailing-slash", {"global": {"imageRegistry": "mirror.example.com/"}},
     "global.imageRegistry"),
    ("tmp-size-limit-on-ephemeral-volume",
     {"server": {"tmp": {"type": "ephemeral", "sizeLimit": "4Gi"}}}, "server.tmp.sizeLimit"),
    ("cloudsql-no-instance", {"database": {"type": "cloudsql",
                                           "cloudsql": {"existingSecret": "s"}}},
     "database.cloudsql.instanceConnectionName"),
    ("cloudsql-malformed-instance",
     merge(CLOUDSQL_PG_PASSWORD,
           {"database": {"cloudsql": {"instanceConnectionName": "my-project/mlflow"}}}),
     "database.cloudsql.instanceConnectionName"),
    ("cloudsql-password-no-secret",
     {"database": {"type": "cloudsql",
                   "cloudsql": {"instanceConnectionName": "p-1:europe-west1:db"}}},
     "database.cloudsql.existingSecret"),
    ("cloudsql-iam-no-user",
     {"database": {"type": "cloudsql", "cloudsql": {
         "instanceConnectionName": "p-1:europe-west1:db", "auth": "iam", "user": ""}}},
     "serviceAccount.gcpServiceAccount"),
    ("cloudsql-iam-pg-user-with-suffix",
     merge(CLOUDSQL_PG_IAM, {"database": {"cloudsql": {"user": GSA}}}),
     "database.cloudsql.user"),
    ("external-no-secret", {"database": {"type": "external",
                                         "external": {"host": "db.example.com"}}},
     "database.external.existingSecret"),
    ("external-no-host", {"database": {"type": "external",
                                       "external": {"existingSecret": "s"}}},
     "database.external.host"),
    ("gcs-no-bucket", {"artifacts": {"type": "gcs"}}, "artifacts.gcs.bucket"),
    ("gcs-bucket-with-scheme", {"artifacts": {"type": "gcs", "gcs": {"bucket": "gs://bucket"}}},
     "artifacts.gcs.bucket"),
    ("gcs-bucket-with-path", {"artifacts": {"type": "gcs", "gcs": {"bucket": "bucket/path"}}},
     "artifacts.gcs.bucket"),
    ("pvc-rwo-two-replicas", {"replicaCount": 2}, "replicaCount"),
    ("pvc-rwo-autoscaling", {"autoscaling": {"enabled": True}}, "autoscaling.enabled"),
    ("pvc-not-served", {"artifacts": {"serve": False}}, "artifacts.serve"),
    ("gsa-malformed", {"serviceAccount": {"gcpServiceAccount": "mlflow@my-project"}},
     "serviceAccount.gcpServiceAccount"),
    ("gsa-without-created-sa", {"serviceAccount": {"create": False, "gcpServiceAccount": GSA}},
     "serviceAccount.create"),
    ("pdb-both-set", {"podDisruptionBudget": {"enabled": True, "minAvailable": 1,
                                              "maxUnavailable": 1}},
     "podDisruptionBudget"),
    ("hpa-max-below-min",
     merge(GCS_SERVED, {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}),
     "autoscaling.maxReplicas"),
    ("servicemonitor-without-metrics", {"metrics": {"serviceMonitor": {"enabled": True}}},
     "metrics.enabled"),
    ("podmonitoring-without-metrics", {"metrics": {"podMonitoring": {"enabled": True}}},
     "metrics.enabled"),
    ("pod-cidr-not-a-cidr", {"server": {"allowedHosts": {"podCIDRs": ["pods"]}}},
     "server.allowedHosts.podCIDRs.0"),
    ("pod-cidr-ipv4-prefix", {"server": {"allowedHosts": {"podCIDRs": ["100.64.0.0/33"]}}},
     "server.allowedHosts.podCIDRs"),
    ("pod-cidr-ipv4-octet", {"server": {"allowedHosts": {"podCIDRs": ["100.264.0.0/16"]}}},
     "server.allowedHosts.podCIDRs"),
    ("pod-cidr-ipv6-boundary", {"server": {"allowedHosts": {"podCIDRs": ["2600:1900::/44"]}}},
     "server.allowedHosts.podCIDRs"),
    # Canonical text compresses a zero group: fd00:0:0:1::/64 has fd00::1:a:b:c:d in it.
    ("pod-cidr-ipv6-zero-group",
     {"server": {"allowedHosts": {"podCIDRs": ["fd00:0:0:1::/64"]}}},
     "server.allowedHosts.podCIDRs"),
    ("httproute-without-parents", {"httpRoute": {"enabled": True}}, "httpRoute.parentRefs"),
    ("proxy-only-subnet-not-a-cidr",
     {"networkPolicy": {"enabled": True, "allowGoogleLoadBalancers": True,
                        "proxyOnlySubnets": ["proxy-subnet"]}}, "networkPolicy.proxyOnlySubnets.0"),
    ("static-prefix-no-leading-slash", {"server": {"staticPrefix": "mlflow"}},
     "server.staticPrefix"),
    ("static-prefix-trailing-slash", {"server": {"staticPrefix": "/mlflow/"}},
     "server.staticPrefix"),
    # 40 concurrent log-batch requests in a worker, each holding one connection, need a 41st.
    ("tmp-type-enum", {"server": {"tmp": {"type": "hostPath"}}}, "server.tmp.type"),
    ("tmp-size-limit-not-a-quantity", {"server": {"tmp": {"sizeLimit": "4 GB"}}},
     "server.tmp.sizeLimit"),
    ("shm-size-limit-not-a-quantity", {"postgresql": {"shmSizeLimit": "lots"}},
     "postgresql.shmSizeLimit"),
    ("pool-below-thread-limit", {"database": {"pool": {"size": 20, "maxOverflow": 20}}},
     "database.pool.maxOverflow"),
    ("pool-below-set-thread-limit",
     {"server": {"threadLimit": 8}, "database": {"pool": {"size": 4, "maxOverflow": 4}}},
     "server.threadLimit"),
]


class TestInvalidValues:
    def test_enough_cases(self):
        assert len(SCHEMA_CASES) + len(UNKNOWN_KEY_CASES) + len(VALIDATE_CASES) >= 20

    @pytest.mark.parametrize(("values", "path"), [c[1:] for c in SCHEMA_CASES + VALIDATE_CASES],
                             ids=[c[0] for c in SCHEMA_CASES + VALIDATE_CASES])
    def test_rejected_naming_the_value(self, helm, values, path):
        stderr = render_error(helm, values)
        assert named(stderr, path), f"the error does not name {path}:\n{stderr}"

    @pytest.mark.parametrize(("values", "parent", "key"), [c[1:] for c in UNKNOWN_KEY_CASES],
                             ids=[c[0] for c in UNKNOWN_KEY_CASES])
    def test_unknown_key_rejected(self, helm, values, parent, key):
        stderr = render_error(helm, values)
        assert unknown_key_named(stderr, parent, key), (
            f"the error does not name {parent}.{key}:\n{stderr}")

    def test_all_problems_reported_at_once(self, helm):
        # _validate.tpl collects every problem: one failed install shows all the fixes.
        stderr = render_error(helm, {"artifacts": {"type": "gcs"},
                                     "httpRoute": {"enabled": True}})
        assert "artifacts.gcs.bucket" in stderr
        assert "httpRoute.parentRefs" in stderr
