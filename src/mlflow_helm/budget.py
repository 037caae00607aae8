"""The connection budget: how many database connections the chart's servers may open, against
the Cloud SQL instance's `max_connections`.

Each server worker keeps its own SQLAlchemy pool, so the servers open at most

    replicas x workers x (database.pool.size + database.pool.maxOverflow)

(replicas: autoscaling.maxReplicas when autoscaling is on), plus about RESERVED for the
migration Job and the basic-auth store (the chart README, Sizing). The instance's limit is its
`max_connections` flag when set, else Cloud SQL's default for the tier: for PostgreSQL by
memory (Cloud SQL for PostgreSQL, "Quotas and limits", Maximum concurrent connections), for
MySQL by machine type (Cloud SQL FAQ: db-f1-micro 250, db-g1-small 1,000, others 4,000).

Over SHARE of it (the rest is headroom for other clients, a second release, a console
session), the plan warns; when the user set none of the sizing values, the CLI also sets
smaller ones that fit: first fewer Flask threads per worker with a pool to match
(server.threadLimit < pool.size + pool.maxOverflow, the chart's own rule), then one worker per
pod. Values given with -f/--set are never overridden.
"""

from __future__ import annotations

import re

RESERVED = 10
SHARE = 0.8
# (memory up to, in MB: default max_connections) for Cloud SQL for PostgreSQL.
POSTGRES_BY_MEMORY = [(614, 25), (1740, 50), (6144, 100), (7680, 200), (15360, 400),
                      (30720, 500), (61440, 600), (122880, 800)]
POSTGRES_MAX = 1000
MYSQL_BY_TIER = {"db-f1-micro": 250, "db-g1-small": 1000}
MYSQL_DEFAULT = 4000
# Memory of the predefined machine types whose names do not say it (MB).
TIER_MEMORY = {"db-f1-micro": 614, "db-g1-small": 1740}
SIZING_KEYS = ("replicaCount", "server.workers", "server.threadLimit", "database.pool.size",
               "database.pool.maxOverflow", "autoscaling.enabled", "autoscaling.maxReplicas")


def tier_memory_mb(tier: str) -> int | None:
    """db-custom-CPUS-MEMORY (also db-perf-optimized-N-CPUS... have no memory in the name)."""
    if tier in TIER_MEMORY:
        return TIER_MEMORY[tier]
    match = re.fullmatch(r"db-custom-\d+-(\d+)", tier)
    return int(match[1]) if match else None


def max_connections(instance: dict, engine: str) -> tuple[int | None, str]:
    """(limit, where it comes from); None when neither the flag nor the tier says."""
    settings = instance.get("settings") or {}
    for flag in settings.get("databaseFlags") or []:
        if flag.get("name") == "max_connections":
            return int(flag["value"]), "its max_connections flag"
    tier = settings.get("tier", "")
    if engine == "mysql":
        return MYSQL_BY_TIER.get(tier, MYSQL_DEFAULT), f"Cloud SQL's default for {tier}"
    memory = tier_memory_mb(tier)
    if memory is None:
        return None, f"tier {tier}"
    for limit_mb, connections in POSTGRES_BY_MEMORY:
        if memory <= limit_mb:
            return connections, f"Cloud SQL's default for {tier}"
    return POSTGRES_MAX, f"Cloud SQL's default for {tier}"


def _get(values: dict, dotted: str):
    for part in dotted.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def demand(values: dict) -> tuple[int, int, int, int]:
    """(connections at most, replicas, workers, per worker) for the final values."""
    replicas = int(_get(values, "replicaCount") or 1)
    if _get(values, "autoscaling.enabled"):
        replicas = int(_get(values, "autoscaling.maxReplicas") or replicas)
    workers = int(_get(values, "server.workers") or 1)
    per_worker = int(_get(values, "database.pool.size") or 0) + int(
        _get(values, "database.pool.maxOverflow") or 0)
    return replicas * workers * per_worker, replicas, workers, per_worker


def fit(values: dict, limit: int) -> dict | None:
    """Smaller sizing values whose budget fits SHARE of `limit`, or None when none does."""
    available = int(limit * SHARE) - RESERVED
    _, replicas, workers, _ = demand(values)
    for workers_per_pod in sorted({workers, 1}, reverse=True):
        per_worker = available // (replicas * workers_per_pod)
        if per_worker < 2:  # one thread needs a pool of two (the rule above)
            continue
        overflow = max(1, per_worker // 5)
        out = {"server": {"threadLimit": per_worker - 1},
               "database": {"pool": {"size": per_worker - overflow, "maxOverflow": overflow}}}
        if workers_per_pod != workers:
            out["server"]["workers"] = workers_per_pod
        return out
    return None
