"""Register program versions in a real MLflow server, the way the optimizer-worker does."""

from __future__ import annotations

import dspy
import mlflow
from mlflow import MlflowClient

from qa_core import registry
from qa_core.baseline import build_baseline
from qa_core.settings import CoreSettings


def register_program(client: MlflowClient, model_name: str, demos: int, lm_model: str | None = None) -> str:
    """Log a baseline-shaped program with `demos` demos as a new version; return its version number.

    `lm_model` names the model its predictor answers with, as a fine-tuned version's state does.
    """
    mlflow.set_experiment(f"{model_name}-runs")
    program = build_baseline(CoreSettings(_env_file=None), demos)
    if lm_model is not None:
        program.answer.lm = dspy.LM(lm_model)
    with mlflow.start_run() as run:
        registry.log_program_state(program)
    return registry.register_version(client, model_name, run.info.run_id, {}).version
