"""Schema migrations for the MLflow chart.

Runs inside the MLflow image, so it may only use what MLflow brings.

  db.py upgrade [--auth]   the migration Job: wait for the database, then run what
                           `mlflow db upgrade` runs (and the basic-auth schema's migrations),
                           and report the schema version before and after.
  db.py wait [--auth]      an init container of every server pod: wait until the database's
                           schema is the one this MLflow version expects, so a new server never
                           starts on an old schema, and never migrates it itself (which races
                           when several replicas start on an empty database).
        [--write-auth-config PATH]   and write MLflow's basic-auth config there, pointing the
                           auth store at the same database. It is written at start-up, into a
                           memory volume, because the URI may carry a MySQL password.
  db.py backup-plan [--auth]   the migration Job's first init container: when a migration is
                           due on a database that holds data, write the plan of a logical dump
                           (connection, name, date) into MLFLOW_BACKUP_PLAN_DIR for backup.sh,
                           which the next init container runs with the database's own client
                           tools. No migration due: no plan, and backup.sh does nothing.
  db.py upload-backup DIR gs://BUCKET/PATH [--keep N]   the scheduled backup's second container
                           (postgresql.backup.destination=gcs): upload the dump in DIR,
                           checked, then delete the oldest dumps under PATH beyond N.
  db.py grant              the one-time grant Job of a Cloud SQL IAM database user
                           (templates/job-db-grant.yaml): as the temporary built-in user of
                           MLFLOW_GRANT_URI, give MLFLOW_GRANT_GRANTEE what MLflow's migrations
                           and server need on MLFLOW_GRANT_DATABASE, and nothing more.

The database URI comes from MLFLOW_BACKEND_STORE_URI; PostgreSQL passwords come from PGPASSWORD.
Messages never print the URI's password.

Backups before migrating (migrations.backup in values.yaml), chosen by MLFLOW_BACKUP_MODE:
  dump      backup.sh has written a dump (its path in MLFLOW_BACKUP_PLAN_DIR/backup); upgrade
            checks it is there and, with a gs:// MLFLOW_BACKUP_DESTINATION, uploads it
            (CRC32C-checked) before the first migration statement.
  cloudsql  the Cloud SQL instance's on-demand backup MLFLOW_BACKUP_CLOUDSQL_ID, taken for the
            MLflow version MLFLOW_BACKUP_CLOUDSQL_FOR (mlflow-helm takes it before upgrading).
  off       the user opted out: migrate without a backup, and say so.
No backup, no migration. Each backup is recorded in the table mlflow_helm_backups of the same
database, so an older image that meets the newer schema (a rollback) names the backup to restore.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

PREFIX = "[mlflow-db]"


def log(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def fail(message: str) -> None:
    print(f"{PREFIX} ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def redacted(uri: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(uri).render_as_string(hide_password=True)


def make_engine(uri: str):
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(uri, poolclass=NullPool)


def wait_for_database(uri: str, timeout: float) -> object:
    """Return an engine once the database accepts connections, or exit after `timeout`."""
    import sqlalchemy

    engine = make_engine(uri)
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        try:
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("SELECT 1"))
            return engine
        except sqlalchemy.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if time.monotonic() > deadline:
                fail(
                    f"database {redacted(uri)} not reachable after {timeout:.0f}s: {reason}. "
                    "Check the database host, its Service or the Cloud SQL proxy's logs."
                )
            if time.monotonic() - last_report >= 10:
                log(f"waiting for database {redacted(uri)}: {reason}")
                last_report = time.monotonic()
            time.sleep(2)


def current_revision(engine, version_table: str = "alembic_version") -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": version_table})
        return context.get_current_revision()


def tracking_script():
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config(db_url=""))


def auth_script():
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db.utils import _get_alembic_config

    return ScriptDirectory.from_config(_get_alembic_config(""))


def schemas(with_auth: bool) -> list[tuple[str, str, object]]:
    """(label, alembic version table, script directory) of each schema this pod depends on."""
    result = [("tracking", "alembic_version", tracking_script())]
    if with_auth:
        result.append(("basic-auth", "alembic_version_auth", auth_script()))
    return result


def check_mysql_binlog(engine) -> None:
    """Fail before migrating when MySQL would refuse MLflow's triggers half-way.

    With the binary log on (Cloud SQL keeps it for point-in-time recovery) and
    log_bin_trust_function_creators off, MySQL refuses CREATE TRIGGER to a user without SUPER
    (error 1419). MLflow's migrations create a table and then its trigger, and MySQL's DDL is not
    transactional: the failed run leaves the table behind and every retry then fails with
    "Table ... already exists".
    """
    import sqlalchemy

    if engine.dialect.name != "mysql":
        return
    with engine.connect() as conn:
        log_bin, trust = conn.execute(
            sqlalchemy.text("SELECT @@log_bin, @@log_bin_trust_function_creators")
        ).one()
        if not int(log_bin) or int(trust):
            return
        grants = " ".join(str(row[0]) for row in conn.execute(sqlalchemy.text("SHOW GRANTS")))
    if "SUPER" in grants or "ALL PRIVILEGES ON *.*" in grants:
        return
    fail(
        "MySQL has the binary log on and log_bin_trust_function_creators off, so it would refuse "
        "the triggers MLflow's migrations create (error 1419) and leave the schema half-migrated. "
        "Set the database flag log_bin_trust_function_creators=on (Cloud SQL: gcloud sql instances "
        "patch INSTANCE --database-flags=log_bin_trust_function_creators=on,<the instance's other "
        "flags>, since --database-flags replaces them) and run the migration again. "
        "Nothing was changed."
    )


def revisions(engine, with_auth: bool) -> dict[str, str | None]:
    """The database's revision of each schema, after refusing one a newer MLflow wrote.

    A revision this image's migrations do not contain was written by a newer MLflow (a
    rollback, or an older image pinned by hand). Alembic would fail half-way through its own
    revision walk ("Can't locate revision"); stop before any statement runs, and say what to do
    instead."""
    before = {label: current_revision(engine, table) for label, table, _ in schemas(with_auth)}
    for label, _table, script in schemas(with_auth):
        if before[label] is not None and not _known(script, before[label]):
            fail(newer_schema(label, before[label], script.get_current_head(), engine))
    return before


def due(before: dict[str, str | None], with_auth: bool) -> list[str]:
    """The schemas a migration will change that already hold data (an empty database has
    nothing to lose, so its first migration needs no backup)."""
    return [f"{label} {before[label]} -> {script.get_current_head()}"
            for label, _table, script in schemas(with_auth)
            if before[label] is not None and before[label] != script.get_current_head()]


def upgrade(uri: str, with_auth: bool, timeout: float) -> None:
    import mlflow
    from mlflow.db import upgrade as mlflow_db_upgrade

    engine = wait_for_database(uri, timeout)
    log(f"MLflow {mlflow.__version__}, database {redacted(uri)}")
    before = revisions(engine, with_auth)
    changes = due(before, with_auth)
    if changes:
        location = require_backup(changes)
        if location:
            record_backup(engine, location, before["tracking"])
    if before["tracking"] != tracking_script().get_current_head():
        check_mysql_binlog(engine)
    # The same code path as `mlflow db upgrade URI`, in process so the URI (which may hold a
    # MySQL password) never appears in a process list.
    mlflow_db_upgrade.callback(uri)
    if with_auth:
        from mlflow.server.auth.db.utils import migrate

        migrate(engine, "head")
    for label, table, script in schemas(with_auth):
        after = current_revision(engine, table)
        head = script.get_current_head()
        if after != head:
            fail(f"{label} schema is at {after} after the upgrade, expected {head}")
        change = "unchanged" if before[label] == after else f"{before[label] or 'empty'} -> {after}"
        log(f"{label} schema {after}: {change}")
    log("migrations done")


def wait(uri: str, with_auth: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    engine = wait_for_database(uri, timeout)
    last_report = 0.0
    while True:
        pending = []
        for label, table, script in schemas(with_auth):
            head = script.get_current_head()
            revision = current_revision(engine, table)
            if revision == head:
                continue
            known = revision is None or _known(script, revision)
            if not known:
                fail(newer_schema(label, revision, head, engine))
            pending.append(f"{label} schema at {revision or 'empty'}, waiting for {head}")
        if not pending:
            log("schema is current")
            return
        if time.monotonic() > deadline:
            fail(
                f"schema not migrated after {timeout:.0f}s ({'; '.join(pending)}). "
                "Check the migration Job: kubectl logs -l "
                "app.kubernetes.io/instance=<release>,app.kubernetes.io/component=migrate"
            )
        if time.monotonic() - last_report >= 10:
            log("; ".join(pending) + " (the migration Job runs it)")
            last_report = time.monotonic()
        time.sleep(3)


def write_auth_config(path: str, uri: str) -> None:
    import configparser

    config = configparser.ConfigParser()
    config["mlflow"] = {
        "default_permission": os.environ.get("MLFLOW_AUTH_DEFAULT_PERMISSION", "READ"),
        # configparser interpolates "%": URL-encoded users (IAM: "sa%40project.iam") need "%%".
        "database_uri": uri.replace("%", "%%"),
        "admin_username": os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME", "admin"),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        config.write(handle)
    log(f"wrote basic-auth config {path}")


def newer_schema(label: str, revision: str, head: str, engine=None) -> str:
    import mlflow

    message = (f"the {label} schema is newer than this image: the database is at revision "
               f"{revision}, which MLflow {mlflow.__version__} (head {head}) does not know, so "
               "a newer MLflow migrated it. Nothing was changed. Roll forward to the chart and "
               "image that migrated it, or restore ")
    found = backups_from(engine, tracking_script().get_current_head()) if engine else []
    if not found:
        return message + "the database backup taken before that upgrade."
    taken_at, by_version, location = found[0]
    return (message + f"the backup taken before that upgrade: {location} (taken {taken_at} by "
            f"the migration of MLflow {by_version}; chart README, Backups, says how).")


# ------------------------------------------------------------------ backups before migrating ----

BACKUPS_TABLE = "mlflow_helm_backups"


def _backups_table():
    import sqlalchemy as sa

    return sa.Table(
        BACKUPS_TABLE, sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("taken_at", sa.String(32), nullable=False),
        sa.Column("mlflow_version", sa.String(64), nullable=False),
        sa.Column("from_revision", sa.String(64), nullable=False),
        sa.Column("location", sa.String(1024), nullable=False),
    )


def record_backup(engine, location: str, from_revision: str | None) -> None:
    """Note the backup in the database itself: the one place every image version reads."""
    import mlflow

    table = _backups_table()
    with engine.begin() as conn:
        table.metadata.create_all(conn, checkfirst=True)
        conn.execute(table.insert().values(
            taken_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            mlflow_version=mlflow.__version__, from_revision=from_revision or "",
            location=location))


def backups_from(engine, revision: str) -> list[tuple[str, str, str]]:
    """(taken_at, MLflow version, location) of the backups taken of the database at tracking
    `revision`, newest first; [] when there are none (or no record table)."""
    import sqlalchemy as sa

    table = _backups_table()
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.taken_at, table.c.mlflow_version, table.c.location)
                .where(table.c.from_revision == revision).order_by(table.c.id.desc())).all()
    except sa.exc.DBAPIError:
        return []
    return [tuple(row) for row in rows]


def require_backup(changes: list[str]) -> str:
    """The backup of the database as it is now, before `changes`; exits when there is none.
    Returns where it is ("" when the user opted out)."""
    import mlflow

    mode = os.environ.get("MLFLOW_BACKUP_MODE", "")
    what = "; ".join(changes)
    if mode == "off":
        log(f"WARNING: migrating ({what}) without a backup: migrations.backup.enabled is false")
        return ""
    if mode == "cloudsql":
        backup_id = os.environ.get("MLFLOW_BACKUP_CLOUDSQL_ID", "")
        taken_for = os.environ.get("MLFLOW_BACKUP_CLOUDSQL_FOR", "")
        instance = os.environ.get("MLFLOW_BACKUP_CLOUDSQL_INSTANCE", "")
        if not backup_id or taken_for != mlflow.__version__:
            stale = (f" (the backup named is {backup_id}, taken for MLflow {taken_for or '?'})"
                     if backup_id else "")
            fail(f"no backup, no migration: this migration ({what}) needs an on-demand backup of "
                 f"Cloud SQL instance {instance} taken for MLflow {mlflow.__version__}{stale}. "
                 "mlflow-helm install takes one before upgrading. With plain helm or GitOps: "
                 f"gcloud sql backups create --instance {instance.split(':')[-1]}, then set "
                 "migrations.backup.cloudSql.backupId to its ID and "
                 f"migrations.backup.cloudSql.mlflowVersion={mlflow.__version__}; or set "
                 "migrations.backup.enabled=false to migrate without one. Nothing was changed.")
        location = f"Cloud SQL backup {backup_id} of instance {instance}"
        log(f"backup: {location}, taken for MLflow {taken_for}")
        return location
    if mode != "dump":
        fail(f"no backup, no migration: MLFLOW_BACKUP_MODE is {mode!r} (dump, cloudsql or off). "
             "Nothing was changed.")
    plan_dir = os.environ.get("MLFLOW_BACKUP_PLAN_DIR", "")
    marker = os.path.join(plan_dir, "backup")
    path = ""
    if plan_dir and os.path.exists(marker):
        with open(marker) as handle:
            path = handle.read().strip()
    if not path or not os.path.isfile(path):
        fail(f"no backup, no migration: this migration ({what}) found no dump from the backup "
             f"init container (no {marker}, or the file it names is missing). Check its log: "
             "kubectl logs job/<the migration Job> -c backup. Nothing was changed.")
    size = os.path.getsize(path)
    destination = os.environ.get("MLFLOW_BACKUP_DESTINATION", "")
    if destination.startswith("gs://"):
        location = upload(path, f"{destination.rstrip('/')}/{plan_value(plan_dir, 'DATE')}/"
                                f"{os.path.basename(path)}")
    else:
        location = path
    log(f"backup: {location}, {size} bytes, verified; migrating ({what})")
    return location


def upload(path: str, url: str, what: str = "migration") -> str:
    """Copy the dump to GCS and check it arrived whole: the client compares the CRC32C it
    computed with the one GCS returns, and the object's size is read back. Never overwrites.
    A failure before a migration stops it; a scheduled backup's fails its Job."""
    from google.cloud import storage

    lead = ("no backup, no migration: " if what == "migration" else "")
    tail = " Nothing was changed." if what == "migration" else ""
    bucket_name, _, name = url[len("gs://"):].partition("/")
    blob = storage.Client().bucket(bucket_name).blob(name)
    try:
        blob.upload_from_filename(path, checksum="crc32c", if_generation_match=0)
        blob.reload()
    except Exception as exc:  # any failure means no backup: say which
        fail(f"{lead}uploading the dump to {url} failed: "
             f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. Check the "
             "release's Google service account may create objects in the bucket "
             f"(roles/storage.objectUser on it).{tail}")
    if blob.size != os.path.getsize(path):
        fail(f"{lead}{url} holds {blob.size} bytes, the dump {os.path.getsize(path)}.{tail}")
    return url


def upload_backup(directory: str, url: str, keep: int) -> None:
    """Upload the dump the backup container left in `directory`, then keep the newest `keep`
    dumps of that database under `url` (their names sort by time: <database>-<UTC time>.dump)."""
    from google.cloud import storage

    dumps = sorted(n for n in os.listdir(directory)
                   if n.endswith(".dump") and not n.startswith("."))
    if not dumps:
        fail(f"no dump in {directory}: the backup container wrote none")
    name = dumps[-1]
    path = os.path.join(directory, name)
    target = upload(path, f"{url.rstrip('/')}/{name}", what="backup")
    log(f"backup: {target}, {os.path.getsize(path)} bytes, verified")
    bucket_name, _, prefix = url[len("gs://"):].rstrip("/").partition("/")
    database = name.rsplit("-", 1)[0]
    bucket = storage.Client().bucket(bucket_name)
    mine = sorted((b for b in bucket.list_blobs(prefix=f"{prefix}/{database}-")
                   if b.name.endswith(".dump") and "/" not in b.name[len(prefix) + 1:]),
                  key=lambda b: b.name, reverse=True)
    for old in mine[keep:]:
        old.delete()
        log(f"backup: deleted gs://{bucket_name}/{old.name} (keeping the newest {keep})")


def plan_value(plan_dir: str, key: str) -> str:
    import shlex

    with open(os.path.join(plan_dir, "plan")) as handle:
        for line in handle:
            name, _, value = line.strip().partition("=")
            if name == f"MLFLOW_BACKUP_{key}":
                return shlex.split(value)[0]
    fail(f"backup plan {plan_dir}/plan has no MLFLOW_BACKUP_{key}")
    return ""


def backup_plan(uri: str, with_auth: bool, timeout: float) -> None:
    """Write what backup.sh needs to dump the database, when a migration is due."""
    import shlex

    from sqlalchemy.engine import make_url

    plan_dir = os.environ.get("MLFLOW_BACKUP_PLAN_DIR", "")
    if not plan_dir:
        fail("MLFLOW_BACKUP_PLAN_DIR is not set")
    engine = wait_for_database(uri, timeout)
    before = revisions(engine, with_auth)
    changes = due(before, with_auth)
    if not changes:
        log("no migration due on a database with data: no backup needed")
        return
    url = make_url(uri)
    stamp = time.gmtime()
    revision = before["tracking"] or "empty"
    plan = {
        "ENGINE": "mysql" if url.get_backend_name() == "mysql" else "postgresql",
        "NAME": f"{url.database}-{time.strftime('%Y%m%dT%H%M%SZ', stamp)}-from-{revision}",
        "DATE": time.strftime("%Y-%m-%d", stamp),
    }
    env = {f"MLFLOW_BACKUP_{k}": v for k, v in plan.items()}
    password = url.password if url.password is not None else os.environ.get("PGPASSWORD")
    host, port = url.host or "localhost", str(url.port or "")
    if plan["ENGINE"] == "postgresql":
        env.update(PGHOST=host, PGPORT=port or "5432", PGUSER=url.username or "",
                   PGDATABASE=url.database or "")
        for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
            if key in url.query:
                env[f"PG{key.upper()}"] = str(url.query[key])
        if password is not None:
            pgpass = os.path.join(plan_dir, "pgpass")
            fields = [host, env["PGPORT"], env["PGDATABASE"], env["PGUSER"], password]
            _write_secret(pgpass, ":".join(f.replace("\\", "\\\\").replace(":", "\\:")
                                           for f in fields) + "\n")
            env["PGPASSFILE"] = pgpass
    else:
        env["MYSQL_DATABASE"] = url.database or ""
        lines = ["[client]", f"host={host}", f"port={port or '3306'}",
                 f"user={_option(url.username or '')}"]
        if password is not None:
            lines.append(f"password={_option(password)}")
        if "charset" in url.query:
            lines.append(f"default-character-set={url.query['charset']}")
        for key in ("ssl_ca", "ssl_cert", "ssl_key"):
            if key in url.query:
                lines.append(f"{key.replace('_', '-')}={_option(str(url.query[key]))}")
        _write_secret(os.path.join(plan_dir, "my.cnf"), "\n".join(lines) + "\n")
    _write_secret(os.path.join(plan_dir, "plan"),
                  "".join(f"{k}={shlex.quote(v)}\n" for k, v in env.items()))
    log(f"migration due ({'; '.join(changes)}): the backup container dumps the database first "
        f"as {plan['NAME']}")


def _option(value: str) -> str:
    """A MySQL option-file value: double-quoted, with backslash escapes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_secret(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _known(script, revision: str) -> bool:
    from alembic.util import CommandError

    try:
        return script.get_revision(revision) is not None
    except CommandError:
        return False


# What MLflow's migrations and server do on MySQL: tables, indexes and foreign keys (CREATE,
# ALTER, DROP, INDEX, REFERENCES), the secrets tables' trigger (TRIGGER), and rows. Cloud SQL
# gives a new IAM user no privileges at all ("Log in using IAM database authentication").
MYSQL_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, DROP, INDEX, REFERENCES, TRIGGER"
# Bounds on a statement stuck behind a lock (another session's DDL on the database), so the
# Job fails in seconds and says why, instead of running into its deadline.
LOCK_TIMEOUT_S = 10
STATEMENT_TIMEOUT_S = 30
SAFE_NAME = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@-")


def grant_statements(engine: str, database: str, grantee: str) -> list[str]:
    """The statements, in order. Names are checked, then quoted for the engine."""
    for what, name in (("database", database), ("grantee", grantee)):
        if not name or not set(name) <= SAFE_NAME:
            fail(f"{what} {name!r}: only letters, digits and _.@- are expected")
    if engine == "postgres":
        # Since PostgreSQL 15 schema public grants CREATE to its owner only; a database the
        # Admin API made is owned by cloudsqlsuperuser, whose member the temporary user is.
        db, role = f'"{database}"', f'"{grantee}"'
        return [
            f"SET statement_timeout = '{STATEMENT_TIMEOUT_S}s'",
            f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'",
            f"GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {db} TO {role}",
            f"GRANT USAGE, CREATE ON SCHEMA public TO {role}",
        ]
    if engine == "mysql":
        # MySQL has no statement timeout for DDL (max_execution_time is SELECT's); metadata and
        # row locks are bounded here, a stuck server by the client's read timeout.
        return [
            f"SET SESSION lock_wait_timeout = {LOCK_TIMEOUT_S}",
            f"SET SESSION innodb_lock_wait_timeout = {LOCK_TIMEOUT_S}",
            f"GRANT {MYSQL_PRIVILEGES} ON `{database}`.* TO '{grantee}'@'%'",
        ]
    fail(f"engine {engine!r}: postgres or mysql")
    return []


def grant(uri: str, engine: str, database: str, grantee: str, timeout: float) -> None:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    statements = grant_statements(engine, database, grantee)
    wait_for_database(uri, timeout)
    args = ({"read_timeout": STATEMENT_TIMEOUT_S, "write_timeout": STATEMENT_TIMEOUT_S}
            if engine == "mysql" else {})
    db = sqlalchemy.create_engine(uri, poolclass=NullPool, connect_args=args)
    try:
        with db.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for statement in statements:
                # SQLAlchemy hands PyMySQL an empty parameter tuple, so PyMySQL %-formats the
                # statement: the host pattern's % is written %%.
                conn.exec_driver_sql(statement.replace("%", "%%") if engine == "mysql"
                                     else statement)
    except sqlalchemy.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        fail(f"grant to {grantee} on database {database} failed: {reason}")
    log(f"granted {grantee} the use of database {database}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="db.py", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["upgrade", "wait", "grant", "backup-plan",
                                            "upload-backup"])
    parser.add_argument("paths", nargs="*", help="upload-backup: DIR gs://BUCKET/PATH")
    parser.add_argument("--keep", type=int, default=7, help="upload-backup: dumps to keep")
    parser.add_argument("--auth", action="store_true", help="also the basic-auth schema")
    parser.add_argument("--write-auth-config", metavar="PATH", help="write the basic-auth config")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("TIMEOUT", 600)))
    args = parser.parse_args(argv)
    if args.command == "upload-backup":
        if len(args.paths) != 2 or not args.paths[1].startswith("gs://") or args.keep < 1:
            fail("usage: db.py upload-backup DIR gs://BUCKET/PATH [--keep N>=1]")
        upload_backup(args.paths[0], args.paths[1], args.keep)
        return
    if args.command == "grant":
        env = {k: os.environ.get(f"MLFLOW_GRANT_{k}", "")
               for k in ("URI", "ENGINE", "DATABASE", "GRANTEE")}
        missing = [f"MLFLOW_GRANT_{k}" for k, v in env.items() if not v]
        if missing:
            fail(f"{', '.join(missing)} not set")
        grant(env["URI"], env["ENGINE"], env["DATABASE"], env["GRANTEE"], args.timeout)
        return
    uri = os.environ.get("MLFLOW_BACKEND_STORE_URI")
    if not uri:
        fail("MLFLOW_BACKEND_STORE_URI is not set")
    if args.command == "upgrade":
        upgrade(uri, args.auth, args.timeout)
    elif args.command == "backup-plan":
        backup_plan(uri, args.auth, args.timeout)
    else:
        wait(uri, args.auth, args.timeout)
        if args.write_auth_config:
            write_auth_config(args.write_auth_config, uri)


if __name__ == "__main__":
    main()
