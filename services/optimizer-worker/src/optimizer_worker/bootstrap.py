"""`optimizer-worker-bootstrap`: make a fresh MLflow usable. Compose runs it once, before the services.

Creates both experiments and, when the registry has no champion yet, registers the shipped baseline
program as the first version with the `champion` alias. Running it again changes nothing.
"""

from __future__ import annotations

import argparse
import logging

import mlflow

from optimizer_worker import registration
from optimizer_worker.settings import Settings
from qa_core import contracts, registry
from qa_core.program import build_program

log = logging.getLogger(__name__)
BOOTSTRAP_JOB_ID = "bootstrap"


# --8<-- [start:bootstrap]
def bootstrap(settings: Settings) -> str:
    """Returns what it did: 'registered version N' or 'champion already set (version N)'."""
    client = registry.configure_mlflow(settings, max_retries=5)
    for name in (settings.mlflow_experiment_name, settings.optimization_experiment_name):
        if mlflow.get_experiment_by_name(name) is None:
            mlflow.create_experiment(name)
    model = settings.registered_model_name
    champion = registry.version_for_alias(client, model, contracts.CHAMPION_ALIAS)
    if champion is not None:
        return f"champion already set (version {champion.version})"
    # A bootstrap that died after registering: reuse its version rather than add a second one.
    version = registration.version_for_job(client, model, BOOTSTRAP_JOB_ID)
    if version is None:
        mlflow.set_experiment(settings.optimization_experiment_name)
        with mlflow.start_run(run_name="baseline", tags={contracts.VERSION_TAG_JOB_ID: BOOTSTRAP_JOB_ID}) as run:
            mlflow.log_params({"optimizer": "none", "program": str(settings.baseline_program_path.name)})
            model_id = registration.log_candidate(build_program(settings), settings)
        tags = {contracts.VERSION_TAG_OPTIMIZER: "baseline", contracts.VERSION_TAG_JOB_ID: BOOTSTRAP_JOB_ID}
        version = registry.register_version(client, model, run.info.run_id, tags, model_id=model_id)
    client.set_registered_model_alias(model, contracts.CHAMPION_ALIAS, str(version.version))
    return f"registered version {version.version} as {contracts.CHAMPION_ALIAS}"


# --8<-- [end:bootstrap]


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(prog="optimizer-worker-bootstrap", description=__doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    print(bootstrap(Settings()))
