"""Shared library of the DSPy QA reference system."""

import os

# Offline by default: without these, LiteLLM/DSPy fetch a price map and MLflow sends telemetry at start-up,
# which stalls where the network is closed. The environment can still override them.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
