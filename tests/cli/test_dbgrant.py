"""The one-time grant Job for PostgreSQL IAM database users: the Job the CLI renders and
creates, its container run as a local process against a real PostgreSQL 15.

Cloud SQL is reproduced as far as the grant can tell: the database is owned by a
`cloudsqlsuperuser` role (NOLOGIN, CREATEROLE, CREATEDB), built-in users are members of it,
the IAM user is a plain LOGIN role with no privileges. The runner creates the temporary
built-in user the way Cloud SQL would when the Admin API is asked to. MySQL's grant runs
against MariaDB in the e2e suite (tests/e2e/test_e2e_configs.py, cloudsql-mysql-iam).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest

from mlflow_helm.dbgrant import GRANT_USER, run_grant
from mlflow_helm.errors import UserError
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


def run_grant_container(port: int, admin):
    """A job_runner for the fake Kubernetes API (tests/fakes/kube.py) that runs the grant
    Job's container as the kubelet would, as a local process: its command as rendered, its
    env with secretKeyRef values from the fake's Secrets and $(VAR) references expanded
    (Kubernetes' dependent environment variables). The proxy sidecar is a network hop only:
    its local port is this PostgreSQL's. Before it, the temporary built-in user the CLI asked
    the Admin API for is created as Cloud SQL creates built-in users: a member of
    cloudsqlsuperuser."""

    def runner(job: dict, fake) -> tuple[bool, str]:
        ns = job["metadata"]["namespace"]
        container = job["spec"]["template"]["spec"]["containers"][0]
        env: dict[str, str] = {}
        for item in container["env"]:
            if "valueFrom" in item:
                ref = item["valueFrom"]["secretKeyRef"]
                data = fake.objects[("secrets", ns, ref["name"])]["data"]
                env[item["name"]] = base64.b64decode(data[ref["key"]]).decode()
            else:
                env[item["name"]] = re.sub(r"\$\((\w+)\)",
                                           lambda m: env.get(m[1], m[0]), item["value"])
        env["MLFLOW_GRANT_URI"] = env["MLFLOW_GRANT_URI"].replace(
            "@127.0.0.1:5432/", f"@127.0.0.1:{port}/")
        with admin.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (GRANT_USER,))
            if not cur.fetchone():
                cur.execute(f'CREATE ROLE "{GRANT_USER}" LOGIN CREATEROLE CREATEDB IN ROLE '
                            "cloudsqlsuperuser")
        command = container["command"]
        assert command[:2] == ["python", "-c"]
        done = subprocess.run([sys.executable, *command[1:]], capture_output=True, text=True,
                              env={**env, "PATH": os.environ["PATH"]}, timeout=120)
        return done.returncode == 0, done.stdout + done.stderr

    return runner


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


def grant_context(world):
    ctx = world.context(database="cloudsql", cloudsql_instance="pg", db_auth="iam",
                        project=PROJECT, database_name="mlflowdb", skip_tests=True)
    ctx.facts.connection_name = f"{PROJECT}:europe-west1:pg"
    ctx.facts.engine = "postgres"
    ctx.facts.ip_type = "private"
    ctx.kube.create_namespace("mlflow")
    return ctx


def test_grant_job_lets_the_iam_user_create_mlflows_tables(world, postgres):
    port, admin = postgres
    assert not can_create_table(port)  # what MLflow would hit without the grant
    world.kube.job_runner = run_grant_container(port, admin)
    ctx = grant_context(world)
    run_grant(ctx)
    assert can_create_table(port)
    # The temporary admin was created and deleted through the Admin API; the Job, its pod
    # and the password's Secret are gone.
    ops = [c.op for c in world.google.calls if c.mutating]
    assert ops == ["users.insert", "users.delete"]
    assert GRANT_USER not in {n for n, _ in world.google.state.users[(PROJECT, "pg")]}
    assert world.kube.jobs == {} and world.kube.pods == {}
    assert world.kube.secret("mlflow", "mlflow-db-grant") is None
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


def test_grant_times_out_on_a_lock_instead_of_hanging(world, postgres):
    """Another session holds a lock the GRANT needs: the Job's lock_timeout ends it in
    seconds, with PostgreSQL's reason in the CLI's error."""
    port, admin = postgres
    world.kube.job_runner = run_grant_container(port, admin)
    blocker = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="mlflowdb")
    try:
        with blocker.cursor() as cur:
            # GRANT ON SCHEMA public updates its pg_namespace row: hold that row's lock.
            cur.execute("GRANT USAGE ON SCHEMA public TO PUBLIC")
        with pytest.raises(UserError) as err:
            run_grant(grant_context(world))
    finally:
        blocker.rollback()
        blocker.close()
    assert "the grant Job mlflow/mlflow-db-grant failed" in err.value.message
    assert "lock timeout" in err.value.message
    assert GRANT_USER not in {n for n, _ in world.google.state.users[(PROJECT, "pg")]}
    assert world.kube.jobs == {} and world.kube.secret("mlflow", "mlflow-db-grant") is None
