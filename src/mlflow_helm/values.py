"""The chart values the CLI computes; the user's -f/--set are layered on top by Helm."""

from __future__ import annotations

from typing import Any

from .context import Context
from .steps.cloudsql import PASSWORD_KEY


def compute_values(ctx: Context) -> dict[str, Any]:
    opts, facts = ctx.opts, ctx.facts
    values: dict[str, Any] = {}
    if opts.local:
        return values
    if opts.needs_gsa:
        values["serviceAccount"] = {"gcpServiceAccount": opts.gsa_email}
    if facts.wi_node_selector:
        # The chart's nodeSelector is the server's, the migration Job's and the test pods':
        # every pod that logs in to Google. A user's own nodeSelector merges with it.
        from .preflight import WI_NODE_LABEL

        values["nodeSelector"] = {WI_NODE_LABEL: "true"}
    if opts.bucket_name:
        values["artifacts"] = {"type": "gcs",
                               "gcs": {"bucket": opts.bucket_name, "path": opts.bucket_path}}
    if opts.database == "cloudsql":
        cloudsql: dict[str, Any] = {
            "instanceConnectionName": facts.connection_name,
            "engine": facts.engine,
            "auth": opts.db_auth,
            "ipType": facts.ip_type,
            "database": opts.database_name,
        }
        if opts.iam_db_auth:
            cloudsql["user"] = ctx.iam_db_user
        else:
            cloudsql.update(user=opts.db_user, existingSecret=opts.db_secret_name,
                            secretKey=PASSWORD_KEY)
        values["database"] = {"type": "cloudsql", "cloudsql": cloudsql}
        if facts.cloudsql_backup:
            # The chart's migration Job migrates a schema with data only after this backup.
            values["migrations"] = {"backup": {"cloudSql": dict(facts.cloudsql_backup)}}
    elif opts.database == "external":
        values["database"] = {"type": "external", "external": {
            "existingSecret": opts.db_secret_name, "uriKey": "uri"}}
    if facts.pool_values:  # the connection budget's smaller sizing (budget.py)
        values = deep_merge(values, facts.pool_values)
    return values


def deep_merge(base: dict, override: dict) -> dict:
    """Helm's merge of values files: maps merge, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
