from __future__ import annotations

import mlflow
import pytest

from qa_core import contracts, registry
from qa_core.baseline import build_baseline
from qa_core.program import load_program
from qa_core.settings import CoreSettings

pytestmark = pytest.mark.slow  # starts a real MLflow server


@pytest.fixture
def client(mlflow_server, request):
    settings = CoreSettings(_env_file=None, mlflow_tracking_uri=mlflow_server.url)
    client = registry.configure_mlflow(settings)
    name = f"qa-program-{request.node.name[:40]}"
    yield client, name
    client.delete_registered_model(name)


def register(client, name: str, program, tags: dict[str, str] | None = None):
    mlflow.set_experiment("registry-tests")
    with mlflow.start_run() as run:
        registry.log_program_state(program)
    return registry.register_version(client, name, run.info.run_id, tags or {})


def test_an_unknown_model_or_alias_reads_as_none(client) -> None:
    mlflow_client, name = client
    assert registry.version_for_alias(mlflow_client, "no-such-model", contracts.CHAMPION_ALIAS) is None
    register(mlflow_client, name, build_baseline(CoreSettings(_env_file=None), 1))
    assert registry.version_for_alias(mlflow_client, name, contracts.CHALLENGER_ALIAS) is None


def test_a_registered_version_loads_into_a_fresh_program(client, tmp_path, index) -> None:
    mlflow_client, name = client
    program = build_baseline(CoreSettings(_env_file=None), 2)
    version = register(mlflow_client, name, program, {contracts.VERSION_TAG_OPTIMIZER: "none"})
    mlflow_client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, version.version)

    found = registry.version_for_alias(mlflow_client, name, contracts.CHAMPION_ALIAS)
    assert found is not None
    assert found.version == version.version
    assert found.tags[contracts.VERSION_TAG_OPTIMIZER] == "none"
    path = registry.download_program_state(mlflow_client, found, tmp_path)
    assert path.name == contracts.PROGRAM_ARTIFACT
    assert load_program(path, index).dump_state() == program.dump_state()


def test_experiment_config_defaults_and_share_updates(client) -> None:
    mlflow_client, name = client
    register(mlflow_client, name, build_baseline(CoreSettings(_env_file=None), 1))
    config = registry.read_experiment(mlflow_client, name, challenger_version="2")
    assert config == registry.ExperimentConfig(contracts.DEFAULT_CHALLENGER_SHARE, "challenger-v2")
    registry.set_challenger_share(mlflow_client, name, 0.3)
    assert registry.read_experiment(mlflow_client, name, "2").challenger_share == 0.3
    with pytest.raises(ValueError, match="between 0 and 1"):
        registry.set_challenger_share(mlflow_client, name, 1.5)


def test_promote_then_roll_back(client) -> None:
    mlflow_client, name = client
    program = build_baseline(CoreSettings(_env_file=None), 1)
    first, second = register(mlflow_client, name, program), register(mlflow_client, name, program)
    mlflow_client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, first.version)
    mlflow_client.set_registered_model_alias(name, contracts.CHALLENGER_ALIAS, second.version)

    assert registry.promote_challenger(mlflow_client, name) == (second.version, first.version)
    assert registry.version_for_alias(mlflow_client, name, contracts.CHAMPION_ALIAS).version == second.version
    assert registry.version_for_alias(mlflow_client, name, contracts.CHALLENGER_ALIAS) is None
    with pytest.raises(LookupError, match="no challenger"):
        registry.promote_challenger(mlflow_client, name)

    assert registry.roll_back_champion(mlflow_client, name) == first.version
    assert registry.version_for_alias(mlflow_client, name, contracts.CHAMPION_ALIAS).version == first.version
    with pytest.raises(LookupError, match="no previous champion"):
        registry.roll_back_champion(mlflow_client, name)
