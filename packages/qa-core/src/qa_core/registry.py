"""The registry contract: program versions, the champion/challenger aliases, and the traffic share.

The worker writes versions and the `challenger` alias; the feedback UI moves aliases and the share;
qa-api reads them all. Every service goes through these functions, so they agree on what each tag
and alias means.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dspy
import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from qa_core import contracts
from qa_core.settings import CoreSettings


def configure_mlflow(settings: CoreSettings, max_retries: int = 0) -> MlflowClient:
    """Point MLflow at the tracking server and bound how long a call may hang.

    MLflow's client retries for minutes by default; a service that must keep serving while MLflow
    is down wants a quick, honest failure instead, and does its own retrying.
    """
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = str(int(max(1, settings.mlflow_timeout_s)))
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(max_retries)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri)


def _missing(error: MlflowException) -> bool:
    return error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND")


# --8<-- [start:read-alias]
def version_for_alias(client: MlflowClient, model_name: str, alias: str) -> ModelVersion | None:
    """The version an alias points at; None when the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if _missing(error):
            return None
        raise


def download_program_state(client: MlflowClient, version: ModelVersion, into: Path | None = None) -> Path:
    """Fetch the version's `program.json` (saved state, never a pickle) to a local file."""
    destination = into or Path(tempfile.mkdtemp(prefix=f"program-v{version.version}-"))
    artifact = f"{contracts.PROGRAM_ARTIFACT_DIR}/{contracts.PROGRAM_ARTIFACT}"
    return Path(client.download_artifacts(version.run_id, artifact, str(destination)))


# --8<-- [end:read-alias]


# --8<-- [start:experiment-config]
@dataclass(frozen=True)
class ExperimentConfig:
    """How traffic is split: the challenger's share, and the salt that makes assignment sticky."""

    challenger_share: float
    salt: str


def read_experiment(client: MlflowClient, model_name: str, challenger_version: str | None) -> ExperimentConfig:
    tags = client.get_registered_model(model_name).tags
    try:
        share = float(tags.get(contracts.TAG_CHALLENGER_SHARE, contracts.DEFAULT_CHALLENGER_SHARE))
    except ValueError:
        share = contracts.DEFAULT_CHALLENGER_SHARE
    # A new challenger starts a new experiment, so by default it reshuffles who sees what.
    salt = tags.get(contracts.TAG_EXPERIMENT_SALT) or f"challenger-v{challenger_version}"
    return ExperimentConfig(challenger_share=min(1.0, max(0.0, share)), salt=salt)


def set_challenger_share(client: MlflowClient, model_name: str, share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"challenger share must be between 0 and 1, got {share}")
    client.set_registered_model_tag(model_name, contracts.TAG_CHALLENGER_SHARE, f"{share:g}")


# --8<-- [end:experiment-config]


# --8<-- [start:promote]
def promote_challenger(client: MlflowClient, model_name: str) -> tuple[str, str | None]:
    """The challenger becomes champion; the old champion is remembered for roll back."""
    challenger = version_for_alias(client, model_name, contracts.CHALLENGER_ALIAS)
    if challenger is None:
        raise LookupError(f"{model_name} has no {contracts.CHALLENGER_ALIAS} to promote")
    champion = version_for_alias(client, model_name, contracts.CHAMPION_ALIAS)
    if champion is not None:
        client.set_registered_model_tag(model_name, contracts.TAG_PREVIOUS_CHAMPION, champion.version)
    client.set_registered_model_alias(model_name, contracts.CHAMPION_ALIAS, challenger.version)
    client.delete_registered_model_alias(model_name, contracts.CHALLENGER_ALIAS)
    return challenger.version, champion.version if champion else None


def roll_back_champion(client: MlflowClient, model_name: str) -> str:
    """Point the champion back at the version the last promotion replaced."""
    previous = client.get_registered_model(model_name).tags.get(contracts.TAG_PREVIOUS_CHAMPION)
    if not previous:
        raise LookupError(f"{model_name} has no previous champion to roll back to")
    client.set_registered_model_alias(model_name, contracts.CHAMPION_ALIAS, previous)
    client.delete_registered_model_tag(model_name, contracts.TAG_PREVIOUS_CHAMPION)
    return previous


# --8<-- [end:promote]


# --8<-- [start:register]
def log_program_state(program: dspy.Module) -> None:
    """Save the program's state as `program/program.json` in the active run."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / contracts.PROGRAM_ARTIFACT
        program.save(str(path))
        mlflow.log_artifact(str(path), artifact_path=contracts.PROGRAM_ARTIFACT_DIR)


def register_version(
    client: MlflowClient, model_name: str, run_id: str, tags: dict[str, str], model_id: str | None = None
) -> ModelVersion:
    """Register the run's program as a new version (creating the registered model on first use)."""
    try:
        client.create_registered_model(model_name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    source = f"models:/{model_id}" if model_id else f"runs:/{run_id}/{contracts.PROGRAM_ARTIFACT_DIR}"
    return client.create_model_version(model_name, source=source, run_id=run_id, tags=tags, model_id=model_id)


# --8<-- [end:register]
