#!/bin/sh
# Runs once, on an empty data volume (/docker-entrypoint-initdb.d): remit's own role and database,
# apart from Temporal's (which the superuser owns and the schema job creates).
set -eu
: "${REMIT_DB_PASSWORD:?}"
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -v pw="$REMIT_DB_PASSWORD" <<'SQL'
CREATE ROLE remit LOGIN PASSWORD :'pw';
CREATE DATABASE remit OWNER remit;
SQL
