"""The registry side of a job: read the champion, log the candidate, register it once, move the alias last."""

from __future__ import annotations

import logging
from pathlib import Path

import dspy
import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.models import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from optimizer_worker.settings import Settings
from qa_core import contracts, registry
from qa_core.lm import LOCAL_PROVIDER, adapter_of, build_adapter, register_local_provider
from qa_core.mlflow_model import ServedQA
from qa_core.program import GroundedQA, build_program

log = logging.getLogger(__name__)

# Serving reads the question and returns the answer and citations; an explicit signature means MLflow
# does not call the LM to infer one while logging.
SERVING_SIGNATURE = ModelSignature(
    inputs=Schema([ColSpec("string", "question")]),
    outputs=Schema([ColSpec("string", "answer")]),
)


# --8<-- [start:champion]
def load_champion(client: MlflowClient, settings: Settings) -> tuple[GroundedQA, str]:
    """The program behind the `champion` alias, or the shipped baseline when the registry has none."""
    version = registry.version_for_alias(client, settings.registered_model_name, contracts.CHAMPION_ALIAS)
    if version is None:
        return build_program(settings), contracts.BASELINE_VERSION
    path = registry.download_program_state(client, version)
    return build_program(settings, Path(path)), str(version.version)


# --8<-- [end:champion]


# --8<-- [start:log-model]
def keyless_lm(settings: Settings, model: str | None = None) -> dspy.LM:
    """The LM as it may be written into an artifact: model and base URL, never a key.

    `mlflow.dspy.log_model` cloudpickles the DSPy settings with the program. Whoever serves the model
    supplies the key from their own environment (LM_API_KEY for the local server, OPENAI_API_KEY, ...).
    """
    if settings.lm_model.startswith(f"{LOCAL_PROVIDER}/"):
        register_local_provider()
    return dspy.LM(
        model or settings.lm_model,
        api_base=settings.lm_api_base or None,
        temperature=settings.lm_temperature,
        max_tokens=settings.lm_max_tokens,
        timeout=settings.lm_timeout_s,
        num_retries=settings.lm_num_retries,
    )


def log_candidate(program: GroundedQA, settings: Settings) -> str:
    """Log `program/program.json` (what services load) and an MLflow DSPy model (what `mlflow models serve`
    loads) into the active run; return the logged model's id.

    A fine-tuned program's predictors carry the job's LM, with the training provider attached; they
    are given keyless LMs of the tuned model first, and each adapter is logged next to the program.
    """
    for predictor in program.predictors():
        if predictor.lm is not None:
            adapter = adapter_of(predictor.lm.model)
            predictor.lm = keyless_lm(settings, predictor.lm.model)
            if adapter is not None and settings.lm_server_adapters_dir is not None:
                mlflow.log_artifact(str(settings.lm_server_adapters_dir / f"{adapter}.gguf"), "adapter")
    registry.log_program_state(program)
    # Only what serving needs goes into the pickle: no callbacks (they hold run state), a keyless LM.
    with dspy.context(lm=keyless_lm(settings), adapter=build_adapter(settings), callbacks=[]):
        info = mlflow.dspy.log_model(
            ServedQA(program),
            name=contracts.DSPY_MODEL_ARTIFACT_DIR,
            signature=SERVING_SIGNATURE,
            # Given explicitly: inferring them would load the model in a subprocess and cost a minute.
            pip_requirements=[f"dspy=={dspy.__version__}", f"mlflow=={mlflow.__version__}", "qa-core", "bm25s"],
        )
    return info.model_id


# --8<-- [end:log-model]


# --8<-- [start:register]
def version_for_job(client: MlflowClient, model_name: str, job_id: str) -> ModelVersion | None:
    """The version an earlier attempt of this job registered, if any."""
    query = f"name = '{model_name}' and tags.{contracts.VERSION_TAG_JOB_ID} = '{job_id}'"
    versions = client.search_model_versions(query)
    return min(versions, key=lambda v: int(v.version)) if versions else None


def register_challenger(
    client: MlflowClient, settings: Settings, job_id: str, run_id: str, model_id: str | None, tags: dict[str, str]
) -> ModelVersion:
    """Register once per job (a retry reuses the version its first attempt made), then set the alias.

    The version carries every tag from the moment it exists (tags go in the create call), and the
    alias moves last: a crash in between leaves an untagged-alias version that the retry picks up,
    never a challenger without its scores.
    """
    name = settings.registered_model_name
    version = version_for_job(client, name, job_id)
    if version is None:
        version = registry.register_version(
            client, name, run_id, {**tags, contracts.VERSION_TAG_JOB_ID: job_id}, model_id=model_id
        )
    client.set_registered_model_alias(name, contracts.CHALLENGER_ALIAS, str(version.version))
    log.info("job %s: version %s is the challenger", job_id, version.version)
    return version


# --8<-- [end:register]
