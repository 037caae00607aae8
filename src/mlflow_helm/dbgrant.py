"""The one-time grant that lets a PostgreSQL IAM database user use MLflow's database.

Why: Cloud SQL creates IAM users with no privileges. A database made through the Admin API
is owned by `cloudsqlsuperuser`, and since PostgreSQL 15 the `public` schema grants CREATE
to nobody but its owner, so `mlflow db upgrade` as the IAM user fails with "permission
denied for schema public".

How: the Admin API cannot issue SQL, so for the few seconds it takes the CLI
1. creates a temporary built-in user `mlflow-helm-grant` with a random password (Cloud SQL
   makes every built-in PostgreSQL user a member of `cloudsqlsuperuser`, which owns the
   database and, through `pg_database_owner`, its `public` schema);
2. connects as that user through a local Cloud SQL Auth Proxy (`cloud-sql-proxy` on PATH,
   with the instance's IP type) and runs `grant_statements()`: CONNECT/CREATE/TEMP on the
   database and USAGE/CREATE on schema `public` for the IAM user; MLflow's tables are then
   created by, and owned by, the IAM user itself;
3. deletes the temporary user, whatever happened: on an error, and after Ctrl-C or SIGTERM
   too (interrupt.py): a signal stops the proxy at once (which ends a connection attempt
   in progress), no statement runs after it, and the deletion runs as cleanup.
A ConfigMap records the grant (steps/cloudsql.py), so a re-run does none of this.
Grants are idempotent; running them twice is harmless. Nothing here prints the password.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any, Protocol

from . import interrupt
from .errors import UserError

GRANT_USER = "mlflow-helm-grant"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def grant_statements(database: str, owner: str) -> list[tuple[str, str]]:
    """(database to connect to, statement) pairs, in order."""
    db, role = quote_ident(database), quote_ident(owner)
    return [
        ("postgres", f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {db} TO {role}"),
        (database, f"GRANT USAGE, CREATE ON SCHEMA public TO {role}"),
    ]


def require_proxy(database: str, owner: str) -> str:
    """The local cloud-sql-proxy the grant connects through, or the error with the fix."""
    binary = shutil.which("cloud-sql-proxy")
    if not binary:
        raise UserError(
            "IAM database auth on PostgreSQL needs a one-time grant, and `cloud-sql-proxy` "
            "is not on PATH to run it",
            "install it (`gcloud components install cloud-sql-proxy`) and re-run; or use "
            "--db-auth password. The grant, as the postgres user: "
            + "; ".join(s for _, s in grant_statements(database, owner)))
    return binary


class Connector(Protocol):
    def connect(self, user: str, password: str, database: str) -> Any: ...


class ProxyConnector:
    """Connects through a local `cloud-sql-proxy` started for the duration of the grant."""

    def __init__(self, connection_name: str, ip_type: str, database: str = "mlflowdb",
                 owner: str = "SA@PROJECT.iam") -> None:
        self.connection_name = connection_name
        self.ip_type = ip_type
        self.database, self.owner = database, owner
        self._proc: subprocess.Popen | None = None
        self._port = 0

    def _start(self) -> int:
        if self._proc is not None:
            return self._port
        binary = require_proxy(self.database, self.owner)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self._port = sock.getsockname()[1]
        args = [binary, "--port", str(self._port), "--address", "127.0.0.1"]
        if self.ip_type == "private":
            args.append("--private-ip")
        elif self.ip_type == "psc":
            args.append("--psc")
        interrupt.check()
        self._proc = subprocess.Popen([*args, self.connection_name],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # A signal sends it SIGTERM at once (interrupt.py); close() reaps it.
        interrupt.track(self._proc.pid, "cloud-sql-proxy")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self._port), timeout=1):
                return self._port
            interrupt.sleep(0.2)
        self.close()
        raise UserError("the local cloud-sql-proxy did not start within 30s",
                        "run it by hand to see why: cloud-sql-proxy " + self.connection_name)

    def connect(self, user: str, password: str, database: str) -> Any:
        import psycopg2

        port = self._start()
        return psycopg2.connect(host="127.0.0.1", port=port, user=user, password=password,
                                dbname=database, connect_timeout=20)

    def close(self) -> None:
        """Stop the proxy and reap it (no zombie, no orphan): SIGTERM, then SIGKILL."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            interrupt.untrack(self._proc.pid)
            self._proc = None


@contextlib.contextmanager
def temporary_admin(ctx) -> Iterator[str]:
    """A built-in user that exists only while the grant runs; yields its password."""
    from .steps.cloudsql import new_password

    project, instance = ctx.instance_project, ctx.opts.instance_name
    from .gcp import not_found

    policy = (ctx.facts.instance.get("settings") or {}).get("passwordValidationPolicy")
    password = new_password(policy=policy, user=GRANT_USER)
    hosts = {u.get("name"): u.get("host") for u in ctx.sql.list_users(project, instance)}
    host = hosts.get(GRANT_USER)
    interrupt.check()
    # From here on the user may exist (an interrupted wait leaves the operation running on
    # the instance), so it is deleted whatever happens next.
    try:
        if GRANT_USER in hosts:  # left over by a crashed run: take it over, new password
            ctx.sql.set_password(project, instance, GRANT_USER, password, host)
        else:
            ctx.sql.create_user(project, instance, GRANT_USER, "BUILT_IN", password)
        yield password
    finally:
        # Cleanup, after a signal too: waits for an operation still running on the instance
        # (users.delete answers 409 until it is done), then deletes.
        with interrupt.shielded():
            try:
                ctx.sql.delete_user(project, instance, GRANT_USER, host)
                ctx.say(f"  deleted the temporary database user {GRANT_USER}")
            except Exception as exc:
                if not_found(exc):  # never created: the signal came first
                    pass
                elif interrupt.CANCELLED.is_set():  # say so; the signal's report follows
                    ctx.say(f"  warning: could not delete the temporary database user "
                            f"{GRANT_USER} ({exc}); the next run removes it")
                else:
                    raise


def run_grant(ctx) -> None:
    owner = ctx.iam_db_user
    connector = ctx.db_connector or ProxyConnector(ctx.facts.connection_name,
                                                   ctx.facts.ip_type, ctx.opts.database_name,
                                                   owner)
    ctx.say(f"  granting {owner} the use of database {ctx.opts.database_name}")
    try:
        with temporary_admin(ctx) as password:
            by_db: dict[str, list[str]] = {}
            for database, statement in grant_statements(ctx.opts.database_name, owner):
                by_db.setdefault(database, []).append(statement)
            for database, statements in by_db.items():
                interrupt.check()
                conn = connector.connect(GRANT_USER, password, database)
                try:
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        for statement in statements:
                            interrupt.check()
                            cur.execute(statement)
                finally:
                    conn.close()
    finally:
        close = getattr(connector, "close", None)
        if close:
            close()
