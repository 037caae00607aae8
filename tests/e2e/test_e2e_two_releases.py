"""Two releases on one Cloud SQL instance, as `mlflow-helm install` sets them up in two
namespaces: each its own database and user (options.default_db_names), each user's password in
its own Secret. Both real MLflow servers run on the same real PostgreSQL; then one release is
purged in purge.py's order and the other must not notice.

The same run checks the fake's model of Cloud SQL's refusal (tests/fakes/google.py,
`_users_delete`) against the real PostgreSQL: users.delete on Cloud SQL for PostgreSQL runs
DROP ROLE, and while the role owns MLflow's tables PostgreSQL refuses it with
`role "U" cannot be dropped because some objects depend on it` and the detail
`N objects in database D` (PostgreSQL 15 src/backend/commands/user.c DropRole and
src/backend/catalog/pg_shdepend.c checkSharedDependencies; Cloud SQL wraps it as quoted in
kernelci/kcidb#407: "Invalid request: failed to delete user …: . role … Details: …").
"""

from __future__ import annotations

import re

import psycopg2
import pytest
from e2e_client import run_client
from e2e_release import Database, secret

from mlflow_helm import purge
from mlflow_helm.gcp import GoogleApis
from mlflow_helm.options import default_db_names
from mlflow_helm.retry import RetryPolicy
from tests.fakes.google import FakeGoogle

PROJECT, REGION, INSTANCE = "proj-e2e", "europe-west1", "shared-pg"
CONNECTION = f"{PROJECT}:{REGION}:{INSTANCE}"
RELEASES = {"team-a": "Pw-team-a-e2e-7Qx", "team-b": "Pw-team-b-e2e-3Lm"}

LOG_RUN = """
import json, mlflow
mlflow.set_experiment("shared-instance")
with mlflow.start_run() as run:
    mlflow.log_param("team", "{team}")
    mlflow.log_metric("loss", 0.25)
got = mlflow.get_run(run.info.run_id)
print(json.dumps({{"run_id": run.info.run_id, "team": got.data.params["team"],
                  "loss": got.data.metrics["loss"]}}))
"""


def release(factory, namespace: str):
    database, user = default_db_names(namespace, "mlflow")
    password = RELEASES[namespace]
    values = {
        "database": {
            "type": "cloudsql",
            "cloudsql": {
                "instanceConnectionName": CONNECTION,
                "engine": "postgres",
                "auth": "password",
                "database": database,
                "user": user,
                "existingSecret": "mlflow-db",  # the CLI's Secret (steps/cloudsql.py)
            },
        },
        "serviceAccount": {
            "gcpServiceAccount": f"mlflow-{namespace}-mlflow@{PROJECT}.iam.gserviceaccount.com"
        },
    }
    return factory(
        namespace,
        namespace=namespace,
        values=values,
        extra_objects=[secret("mlflow-db", namespace, password=password)],
        database=Database("postgres", database, user, password, cloudsql=True),
    )


def log_run(rel, team: str) -> dict:
    result = run_client(LOG_RUN.format(team=team), rel.tracking_uri(), rel.workdir / "client")
    assert result["team"] == team and result["loss"] == 0.25
    return result


def connects(pg, user: str, password: str, database: str) -> bool:
    """The Secret's password opens a session as its user over TCP (scram), as the proxy's."""
    try:
        psycopg2.connect(host="127.0.0.1", port=pg.port, user=user, password=password,
                         dbname=database, connect_timeout=5).close()
        return True
    except psycopg2.OperationalError:
        return False


def drop_role_error(pg, user: str) -> tuple[str, str]:
    """DROP ROLE as Cloud SQL's users.delete runs it (from another database): the real
    PostgreSQL's (message, detail)."""
    with pytest.raises(psycopg2.errors.DependentObjectsStillExist) as refused:
        pg.admin(f'DROP ROLE "{user}"')
    diag = refused.value.diag
    return diag.message_primary, diag.message_detail


def fake_delete_user_error(user: str, database: str, objects: int) -> str:
    """The fake Cloud SQL's error message for users.delete of a user that owns `objects`
    objects in `database`, through the CLI's own client over real HTTP."""
    from mlflow_helm.gcp import error_reason
    from mlflow_helm.gcp.sqladmin import SqlAdmin

    google = FakeGoogle(op_seconds=0.01)
    google.add_project(PROJECT)
    google.add_instance(PROJECT, INSTANCE, region=REGION)
    try:
        sql = SqlAdmin(GoogleApis(base_url=google.serve(), retry=RetryPolicy(
            attempts=1, base=0.01, poll_interval=0.01)))
        sql.create_user(PROJECT, INSTANCE, user, "BUILT_IN", "not-shown")
        google.own(PROJECT, INSTANCE, user, database, objects)  # MLflow's migrations ran
        with pytest.raises(Exception) as refused:
            sql.delete_user(PROJECT, INSTANCE, user)
        return error_reason(refused.value)
    finally:
        google.close()


def test_two_releases_share_an_instance_and_purging_one_leaves_the_other(release_factory):
    rel_a, rel_b = release(release_factory, "team-a"), release(release_factory, "team-b")
    (db_a, user_a), (db_b, user_b) = (default_db_names(ns, "mlflow") for ns in RELEASES)
    assert db_a != db_b and user_a != user_b
    pg = rel_a.services.postgres
    for rel in (rel_a, rel_b):
        rel.install()
        code, output = rel.helm_test()
        assert code == 0, f"helm test failed:\n{output}\n{rel.logs()}"
    run_a, run_b = log_run(rel_a, "team-a"), log_run(rel_b, "team-b")
    assert run_a["run_id"] != run_b["run_id"]
    # Each Secret matches its own user, and only its own.
    assert connects(pg, user_a, RELEASES["team-a"], db_a)
    assert connects(pg, user_b, RELEASES["team-b"], db_b)
    assert not connects(pg, user_a, RELEASES["team-b"], db_a)
    # Each server wrote to its own database: B's run is not in A's tables.
    assert pg.query(db_b, f"SELECT count(*) FROM runs WHERE run_uuid = '{run_a['run_id']}'") \
        == [(0,)]

    # MLflow's migrations ran as the user: it owns the tables, so DROP ROLE first is refused.
    message, detail = drop_role_error(pg, user_a)
    assert message == f'role "{user_a}" cannot be dropped because some objects depend on it'
    found = re.fullmatch(rf"(\d+) objects in database {re.escape(db_a)}", detail)
    assert found, detail
    # The fake says it in Cloud SQL's words around PostgreSQL's own.
    assert fake_delete_user_error(user_a, db_a, int(found.group(1))) == \
        f"Invalid request: failed to delete user {user_a}: . {message} Details: {detail}."

    # Purge A in purge.py's order: the release (its server) first, then the database
    # (databases.delete: DROP DATABASE), then the user (users.delete: DROP ROLE).
    assert purge.ORDER.index("cloud sql database") < purge.ORDER.index("cloud sql user")
    rel_a.stop()
    pg.admin(f'DROP DATABASE "{db_a}"')  # no FORCE: A's server left no session behind
    pg.admin(f'DROP ROLE "{user_a}"')  # its objects went with its database
    assert pg.admin(f"SELECT 1 FROM pg_roles WHERE rolname = '{user_a}'") == []

    # B: its user, password, data and server are as they were.
    assert connects(pg, user_b, RELEASES["team-b"], db_b)
    assert pg.query(db_b, f"SELECT count(*) FROM runs WHERE run_uuid = '{run_b['run_id']}'") \
        == [(1,)]
    log_run(rel_b, "team-b")
    code, output = rel_b.helm_test()
    assert code == 0, f"helm test of team-b after team-a's purge:\n{output}\n{rel_b.logs()}"
