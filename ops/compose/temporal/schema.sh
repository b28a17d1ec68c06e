#!/bin/sh
# The Temporal schema job (temporalio/admin-tools): creates and migrates Temporal's two databases
# on PostgreSQL with the official SQL tool, then exits. Safe to run at every `up`: an existing
# schema is only updated (update-schema), and nothing is ever set up with --overwrite.
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
PORT="${DB_PORT:-5432}"
SCHEMA_ROOT=/etc/temporal/schema/postgresql/v12

tool() { temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$PORT" "$@"; }

migrate() { # database, schema folder
  if tool --db "$1" update-schema -d "$SCHEMA_ROOT/$2/versioned"; then
    echo "$1: schema up to date"
    return
  fi
  echo "$1: no schema yet; creating it"
  tool --db "$1" create || true # it may exist, empty; setup-schema below fails if anything else is wrong
  tool --db "$1" setup-schema -v 0.0
  tool --db "$1" update-schema -d "$SCHEMA_ROOT/$2/versioned"
}

until nc -z "$POSTGRES_SEEDS" "$PORT"; do echo 'waiting for PostgreSQL'; sleep 1; done
migrate temporal temporal
migrate temporal_visibility visibility
echo 'Temporal schema ready'
