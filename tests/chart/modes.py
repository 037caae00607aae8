"""Values documents the component tests share: the database and artifact modes of the chart."""

from __future__ import annotations

import copy
from typing import Any

GSA = "mlflow-sa@my-project.iam.gserviceaccount.com"
INSTANCE = "my-project:europe-west1:mlflow"


def merge(*docs: dict) -> dict:
    """Deep-merge values documents, later wins (as Helm merges --values files)."""
    out: dict[str, Any] = {}
    for doc in docs:
        for key, value in doc.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = copy.deepcopy(value)
    return out


INCLUSTER: dict = {}
CLOUDSQL_PG_PASSWORD = {
    "database": {"type": "cloudsql",
                 "cloudsql": {"instanceConnectionName": INSTANCE, "existingSecret": "mlflow-db"}},
}
CLOUDSQL_PG_IAM = {
    "serviceAccount": {"gcpServiceAccount": GSA},
    "database": {"type": "cloudsql",
                 "cloudsql": {"instanceConnectionName": INSTANCE, "auth": "iam", "user": ""}},
}
CLOUDSQL_MYSQL_PASSWORD = merge(
    CLOUDSQL_PG_PASSWORD, {"database": {"cloudsql": {"engine": "mysql"}}}
)
CLOUDSQL_MYSQL_IAM = merge(CLOUDSQL_PG_IAM, {"database": {"cloudsql": {"engine": "mysql"}}})
EXTERNAL_PG = {
    "database": {"type": "external",
                 "external": {"host": "db.example.com", "existingSecret": "ext-db"}},
}
EXTERNAL_MYSQL = merge(EXTERNAL_PG, {"database": {"external": {"engine": "mysql", "port": 3307}}})
EXTERNAL_URI = {
    "database": {"type": "external",
                 "external": {"existingSecret": "ext-db", "uriKey": "uri"}},
}

# The in-cluster PostgreSQL with its scheduled backups (a CronJob and a volume).
INCLUSTER_BACKUP = {"postgresql": {"backup": {"enabled": True}}}
# ... uploaded to GCS by a second container (the MLflow image, as the release's identity).
INCLUSTER_BACKUP_GCS = {"postgresql": {"backup": {"enabled": True, "destination": "gcs"}},
                        "backups": {"gcs": {"bucket": "team-backups"}}}

DATABASE_MODES = {
    "incluster": INCLUSTER,
    "incluster-backup": INCLUSTER_BACKUP,
    "incluster-backup-gcs": INCLUSTER_BACKUP_GCS,
    "cloudsql-pg-password": CLOUDSQL_PG_PASSWORD,
    "cloudsql-pg-iam": CLOUDSQL_PG_IAM,
    "cloudsql-mysql-password": CLOUDSQL_MYSQL_PASSWORD,
    "cloudsql-mysql-iam": CLOUDSQL_MYSQL_IAM,
    "external-pg": EXTERNAL_PG,
    "external-mysql": EXTERNAL_MYSQL,
    "external-uri": EXTERNAL_URI,
}
CLOUDSQL_MODES = {k: v for k, v in DATABASE_MODES.items() if k.startswith("cloudsql")}

PVC = {}
GCS_SERVED = {"artifacts": {"type": "gcs", "gcs": {"bucket": "bucket", "path": "path"}}}
GCS_DIRECT = merge(GCS_SERVED, {"artifacts": {"serve": False}})

ARTIFACT_MODES = {"pvc": PVC, "gcs-served": GCS_SERVED, "gcs-direct": GCS_DIRECT}
