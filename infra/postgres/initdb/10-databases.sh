#!/bin/bash
# First start of the postgres container only (docker-entrypoint-initdb.d): one database for MLflow, one for the
# application services. In `app`, each service has its own role and schema (search_path set per role), so the
# jobs table and the feedback tables, and each service's Alembic version table, never meet.
set -euo pipefail
: "${MLFLOW_DB_PASSWORD:?}" "${WORKER_DB_PASSWORD:?}" "${FEEDBACK_DB_PASSWORD:?}"

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v mlflow_password="$MLFLOW_DB_PASSWORD" \
  -v worker_password="$WORKER_DB_PASSWORD" \
  -v feedback_password="$FEEDBACK_DB_PASSWORD" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;

CREATE ROLE worker LOGIN PASSWORD :'worker_password';
CREATE ROLE feedback LOGIN PASSWORD :'feedback_password';
CREATE DATABASE app;
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT ON DATABASE app TO worker, feedback;
\connect app
REVOKE ALL ON SCHEMA public FROM PUBLIC;
CREATE SCHEMA worker AUTHORIZATION worker;
CREATE SCHEMA feedback AUTHORIZATION feedback;
ALTER ROLE worker IN DATABASE app SET search_path = worker;
ALTER ROLE feedback IN DATABASE app SET search_path = feedback;
SQL
