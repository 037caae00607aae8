#!/bin/sh
# Entrypoint of the e2e suite's PostgreSQL image, a stand-in for the official postgres image
# (Debian's PostgreSQL 15 where the chart names postgres:17). It keeps the contract the chart
# relies on, as the official image documents it (hub.docker.com/_/postgres, "Environment
# Variables" and "Initialization scripts"; docker-library/postgres docker-entrypoint.sh):
# - arguments that start with "-" are options of `postgres`;
# - run as any uid (the chart sets 999, the image's postgres user): PGDATA is created if
#   missing and made 0700;
# - initdb only when PGDATA holds no cluster yet (no PG_VERSION): POSTGRES_USER (default
#   postgres) becomes the superuser with POSTGRES_PASSWORD (required), POSTGRES_DB (default:
#   the user's name) is created, remote connections authenticate by POSTGRES_HOST_AUTH_METHOD
#   (default scram-sha-256), local socket connections are trusted, as initdb leaves them;
# - then postgres runs in the foreground as the container's process, listening on every
#   address (the image's postgresql.conf.sample says listen_addresses = '*').
# The password is passed to initdb in a file and to nothing else; it is never printed.
set -eu

if [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
  : "${PGDATA:?PGDATA must name the data directory}"
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
      echo "Error: Database is uninitialized and superuser password is not specified." >&2
      echo "       Set POSTGRES_PASSWORD to a non-empty value for the superuser." >&2
      exit 1
    fi
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
    # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of options, as upstream
    initdb --username="$user" --pwfile="$pwfile" -D "$PGDATA" ${POSTGRES_INITDB_ARGS:-}
    rm -f "$pwfile"
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" \
      >>"$PGDATA/pg_hba.conf"
    # A server on the socket only, to create the database, as upstream's temporary server.
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start
    if [ "$db" != postgres ]; then
      # From stdin, where psql interpolates :"db" as a quoted identifier (-c would not).
      echo 'CREATE DATABASE :"db";' |
        psql -v ON_ERROR_STOP=1 --username="$user" --no-password --dbname=postgres --set=db="$db"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop
    echo "PostgreSQL init process complete; ready for start up."
  else
    echo "PostgreSQL Database directory appears to contain a database; Skipping initialization"
  fi
fi

exec "$@"
