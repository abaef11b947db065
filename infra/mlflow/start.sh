#!/bin/sh
# Bring the backend store's schema up to this MLflow version, then serve. Settings from the environment:
#   MLFLOW_BACKEND_STORE_URI   required, e.g. postgresql+psycopg://mlflow:...@postgres:5432/mlflow
#   MLFLOW_ARTIFACTS_DESTINATION  /mlartifacts (a volume) or s3://bucket/prefix
#   MLFLOW_ALLOWED_HOSTS       Host headers the server answers (DNS-rebinding protection)
#   MLFLOW_PORT, MLFLOW_WORKERS
set -eu
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI}"
: "${MLFLOW_ALLOWED_HOSTS:?set MLFLOW_ALLOWED_HOSTS}"
mlflow db upgrade "$MLFLOW_BACKEND_STORE_URI"
exec mlflow server \
  --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --serve-artifacts --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" \
  --host 0.0.0.0 --port "$MLFLOW_PORT" --workers "$MLFLOW_WORKERS" \
  --allowed-hosts "$MLFLOW_ALLOWED_HOSTS"
