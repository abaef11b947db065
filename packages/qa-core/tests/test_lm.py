from __future__ import annotations

import configparser
import json
from pathlib import Path

import dspy
import pytest

from qa_core.adapters import JSONAdapter, constrained_response_format
from qa_core.lm import adapter_of, build_adapter, build_lm
from qa_core.lm_server import ADAPTER_SEPARATOR, MODEL_ALIAS, presets, served_adapters
from qa_core.program import AnswerFromPassages, build_program
from qa_core.settings import CoreSettings


def test_the_local_provider_is_declared_to_accept_a_response_schema() -> None:
    lm = build_lm(CoreSettings(_env_file=None))
    assert lm.supports_response_schema
    assert "response_format" in lm.supported_params
    assert lm.kwargs["temperature"] == 0.0


def test_other_litellm_models_need_no_declaration() -> None:
    lm = build_lm(CoreSettings(_env_file=None, lm_model="openai/gpt-4o-mini", lm_api_base="", lm_api_key="sk-x"))
    assert lm.model == "openai/gpt-4o-mini"


def test_structured_output_setting_picks_the_adapter() -> None:
    assert isinstance(build_adapter(CoreSettings(_env_file=None)), JSONAdapter)
    chat = build_adapter(CoreSettings(_env_file=None, lm_structured_output=False))
    assert type(chat) is dspy.ChatAdapter
    assert chat.use_json_adapter_fallback is False


def test_the_response_schema_keeps_the_limits_declared_on_top_level_fields() -> None:
    schema = constrained_response_format(AnswerFromPassages).model_json_schema()
    assert schema["properties"]["answer"]["maxLength"] == 80
    assert schema["properties"]["citations"]["minItems"] == 1
    assert schema["properties"]["citations"]["maxItems"] == 3
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["citations", "answer"]  # the passage is chosen before the words


def test_the_presets_serve_the_base_model_and_one_model_per_adapter(tmp_path: Path) -> None:
    (tmp_path / "job-0123456789ab.gguf").write_bytes(b"GGUF")
    (tmp_path / ".job-fedcba987654.gguf.partial").write_bytes(b"GG")  # a job still writing it
    (tmp_path / "Not A Job.gguf").write_bytes(b"GGUF")  # not a name a job writes: never a model name
    settings = CoreSettings(_env_file=None, lm_server_context=2048, lm_server_parallel=4)
    adapters = served_adapters(tmp_path)
    assert list(adapters) == [f"{MODEL_ALIAS}{ADAPTER_SEPARATOR}job-0123456789ab"]
    ini = configparser.ConfigParser()
    ini.read_string("[file]\n" + presets(settings, adapters))  # the version line comes before any section
    assert ini["file"]["version"] == "1"
    assert ini["*"]["model"] == str(settings.gguf_path)
    assert (ini["*"]["ctx-size"], ini["*"]["parallel"]) == ("8192", "4")  # every slot gets the full window
    assert ini[MODEL_ALIAS]["load-on-startup"] == "true"
    assert ini[f"{MODEL_ALIAS}+job-0123456789ab"]["lora"] == str(tmp_path / "job-0123456789ab.gguf")
    assert served_adapters(tmp_path / "missing") == {}


@pytest.mark.parametrize("structured", [True, False])
def test_the_program_runs_against_an_openai_compatible_server(simulator_base: str, structured: bool, index) -> None:
    from qa_core.program import GroundedQA

    settings = CoreSettings(
        _env_file=None, lm_model="openai/lm-simulator", lm_api_base=simulator_base, lm_structured_output=structured
    )
    with dspy.context(lm=build_lm(settings), adapter=build_adapter(settings)):
        result = GroundedQA(index)(question="Which port does the MLflow tracking server listen on?")
    # The simulator answers extractively: a span of the passage it cites, which must be one it was given.
    cited = {p.id: p for p in result.passages}[result.citations[0]]
    assert result.answer
    assert result.answer.rstrip(".") in cited.as_prompt_line()
    assert cited.doc_id == "mlflow-tracking"
    assert result.grounded


def _saved_with_lm(tmp_path, model: str | None) -> CoreSettings:
    """Save the baseline program with its predictor naming `model`, as a fine-tuning job's version does."""
    settings = CoreSettings(_env_file=None, lm_api_base="http://lm.internal:8080/v1", lm_api_key="server-key")
    program = build_program(settings)
    program.answer.lm = dspy.LM(model, api_base="http://attacker.example/v1", api_key="leaked") if model else None
    program.save(str(tmp_path / "program.json"))
    return settings


def test_a_tuned_version_answers_with_its_adapter_through_this_services_endpoint_and_key(tmp_path) -> None:
    settings = _saved_with_lm(tmp_path, "llamacpp/smollm2-135m-instruct+job-0123456789ab")
    saved = json.loads((tmp_path / "program.json").read_text())
    assert "leaked" not in json.dumps(saved)  # DSPy never saves a key
    program = build_program(settings, tmp_path / "program.json")
    assert program.answer.lm.model == "llamacpp/smollm2-135m-instruct+job-0123456789ab"
    assert program.answer.lm.kwargs["api_base"] == "http://lm.internal:8080/v1"
    assert program.answer.lm.kwargs["api_key"] == "server-key"


def test_a_version_saved_with_the_base_model_uses_the_calls_lm(tmp_path) -> None:
    settings = _saved_with_lm(tmp_path, "llamacpp/smollm2-135m-instruct")
    assert build_program(settings, tmp_path / "program.json").answer.lm is None


@pytest.mark.parametrize(
    "model", ["openai/gpt-4o", "llamacpp/other-model+job-1", "llamacpp/smollm2-135m-instruct+../../etc/passwd"]
)
def test_a_version_naming_another_model_is_refused(tmp_path, model: str) -> None:
    settings = _saved_with_lm(tmp_path, model)
    with pytest.raises(ValueError, match="this deployment serves 'llamacpp/smollm2-135m-instruct'"):
        build_program(settings, tmp_path / "program.json")


def test_adapter_of_reads_the_adapter_name() -> None:
    assert adapter_of("llamacpp/smollm2-135m-instruct+job-1a2b") == "job-1a2b"
    assert adapter_of("llamacpp/smollm2-135m-instruct") is None
