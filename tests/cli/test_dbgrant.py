"""The one-time grant for PostgreSQL IAM database users, against a real PostgreSQL 15.

Cloud SQL is reproduced as far as the grant can tell: the database is owned by a
`cloudsqlsuperuser` role (NOLOGIN, CREATEROLE, CREATEDB), built-in users are members of it,
the IAM user is a plain LOGIN role with no privileges. The test connector creates the
temporary built-in user the way Cloud SQL would when the Admin API is asked to.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import pytest

from mlflow_helm.dbgrant import GRANT_USER, run_grant
from tests.cli.conftest import PROJECT
from tests.fakes.gcs import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")
IAM_USER = f"mlflow-mlflow-mlflow@{PROJECT}.iam"


def as_postgres(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                          capture_output=True, text=True, **kw)


@pytest.fixture
def postgres():
    assert (PG_BIN / "initdb").exists(), "PostgreSQL 15 binaries missing (apt postgresql-15)"
    # Not under pytest's tmp dir: that one is private to root, and PostgreSQL runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="mlflow-helm-pg-"))
    os.chmod(root, 0o777)
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    shutil.chown(sock, "postgres")
    as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
    port = free_port()
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o",
                f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "-l",
                str(root / "log"), "-w", "start")
    admin = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("CREATE ROLE cloudsqlsuperuser NOLOGIN CREATEROLE CREATEDB")
        cur.execute("CREATE DATABASE mlflowdb OWNER cloudsqlsuperuser")
        cur.execute(f'CREATE ROLE "{IAM_USER}" LOGIN')
    yield port, admin
    admin.close()
    as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
    shutil.rmtree(root, ignore_errors=True)


class CloudSqlLikeConnector:
    """Creates the built-in user the Admin API was asked for, then logs in as it."""

    def __init__(self, port: int, admin) -> None:
        self.port, self.admin = port, admin

    def connect(self, user: str, password: str, database: str):
        with self.admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,))
            if not cur.fetchone():
                cur.execute(f'CREATE ROLE "{user}" LOGIN CREATEROLE CREATEDB IN ROLE '
                            "cloudsqlsuperuser")
        return psycopg2.connect(host="127.0.0.1", port=self.port, user=user,
                                password=password, dbname=database)


def can_create_table(port: int) -> bool:
    conn = psycopg2.connect(host="127.0.0.1", port=port, user=IAM_USER, dbname="mlflowdb")
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE experiments (id int)")
        conn.commit()
        return True
    except psycopg2.errors.InsufficientPrivilege:
        return False
    finally:
        conn.close()


def test_grant_lets_the_iam_user_create_mlflows_tables(world, postgres):
    port, admin = postgres
    assert not can_create_table(port)  # what MLflow would hit without the grant
    ctx = world.context(database="cloudsql", cloudsql_instance="pg", db_auth="iam",
                        project=PROJECT, database_name="mlflowdb")
    ctx.facts.connection_name = f"{PROJECT}:europe-west1:pg"
    ctx.facts.engine = "postgres"
    ctx.db_connector = CloudSqlLikeConnector(port, admin)
    run_grant(ctx)
    assert can_create_table(port)
    # The temporary admin was created and deleted through the Admin API.
    ops = [c.op for c in world.google.calls if c.mutating]
    assert ops == ["users.insert", "users.delete"]
    assert GRANT_USER not in {n for n, _ in world.google.state.users[(PROJECT, "pg")]}
    # Running it again is harmless (a crash after the grant, before the marker).
    run_grant(ctx)
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="mlflowdb")
    with conn.cursor() as cur:
        cur.execute("SELECT has_schema_privilege(%s, 'public', 'CREATE'), "
                    "has_database_privilege(%s, 'mlflowdb', 'CREATE'), "
                    "pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'experiments'",
                    (IAM_USER, IAM_USER))
        # MLflow's tables belong to the IAM user itself, so later migrations can alter them.
        assert cur.fetchone() == (True, True, IAM_USER)
    conn.close()


def test_missing_proxy_binary_explains_the_manual_grant(world, monkeypatch):
    from mlflow_helm.dbgrant import ProxyConnector
    from mlflow_helm.errors import UserError

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError) as err:
        ProxyConnector(f"{PROJECT}:europe-west1:pg", "private").connect("u", "p", "postgres")
    assert "cloud-sql-proxy" in err.value.message
    assert "GRANT USAGE, CREATE ON SCHEMA public" in err.value.hint
