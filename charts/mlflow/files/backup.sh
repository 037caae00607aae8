#!/bin/sh
# The logical dump before a migration: the migration Job's second init container, in the
# database's client image (PostgreSQL: pg_dump; MySQL: mysqldump), POSIX sh only.
#
#   backup.sh PLAN_DIR OUT_DIR
#
# PLAN_DIR is what `db.py backup-plan` wrote: no `plan` file there means no migration is due on
# a database with data, and this does nothing. Otherwise `plan` (shell assignments: engine,
# name, date, the PG* connection variables) and a password file (pgpass or my.cnf, mode 0600)
# say how to connect. The dump goes to OUT_DIR/<date>/ under a temporary name, is read back
# (pg_restore --list reads the archive's table of contents; a mysqldump file must end with its
# "Dump completed" trailer) and only then gets its final name, which is written to
# PLAN_DIR/backup for `db.py upgrade`. Any failure exits non-zero: the Job stops before the
# migration container starts. Passwords stay in the files; nothing here prints them.
set -eu

plan_dir=$1
out_root=$2
say() { echo "[mlflow-backup] $*"; }

if [ ! -f "$plan_dir/plan" ]; then
  say "no migration due on a database with data: nothing to back up"
  exit 0
fi
# shellcheck disable=SC1091  # written at run time by db.py backup-plan
. "$plan_dir/plan"
# The plan's PG* assignments are for pg_dump: export them (naming an unset one exports nothing).
export PGHOST PGPORT PGUSER PGDATABASE PGPASSFILE PGSSLMODE PGSSLROOTCERT PGSSLCERT PGSSLKEY

out="$out_root/$MLFLOW_BACKUP_DATE"
mkdir -p "$out"
case "$MLFLOW_BACKUP_ENGINE" in
  postgresql)
    final="$out/$MLFLOW_BACKUP_NAME.dump"
    part="$out/.$MLFLOW_BACKUP_NAME.dump.partial"
    trap 'rm -f "$part"' EXIT
    # Custom format: restores with pg_restore, into a database of any name and owner.
    pg_dump --format=custom --no-owner --file="$part"
    pg_restore --list "$part" > /dev/null
    ;;
  mysql)
    final="$out/$MLFLOW_BACKUP_NAME.sql"
    part="$out/.$MLFLOW_BACKUP_NAME.sql.partial"
    trap 'rm -f "$part"' EXIT
    # One consistent InnoDB snapshot; MLflow's triggers included; no tablespace statements (they
    # need the PROCESS privilege). MySQL's own mysqldump would otherwise write the server's
    # GTID set, which only a SUPER user can restore; MariaDB's has no such option.
    gtid=""
    if mysqldump --help 2>/dev/null | grep -q -- '--set-gtid-purged'; then
      gtid="--set-gtid-purged=OFF"
    fi
    # shellcheck disable=SC2086  # $gtid is one option or nothing
    mysqldump --defaults-extra-file="$plan_dir/my.cnf" --single-transaction --triggers \
      --no-tablespaces $gtid --result-file="$part" "$MYSQL_DATABASE"
    if ! tail -n 1 "$part" | grep -q '^-- Dump completed'; then
      say "ERROR: the dump of $MYSQL_DATABASE has no 'Dump completed' trailer: it is incomplete"
      exit 1
    fi
    ;;
  *)
    say "ERROR: engine '$MLFLOW_BACKUP_ENGINE' in $plan_dir/plan: postgresql or mysql"
    exit 1
    ;;
esac
mv "$part" "$final"
trap - EXIT
echo "$final" > "$plan_dir/backup"
say "dumped to $final: $(wc -c < "$final") bytes, read back"
