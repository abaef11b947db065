from __future__ import annotations

import pytest
from pydantic import ValidationError

from qa_core.settings import DEV_LM_API_KEY, CoreSettings, bundled_gguf_path


def test_defaults_work_locally_without_any_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LM_MODEL", "LM_API_BASE", "LM_API_KEY", "APP_ENV", "CORPUS_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = CoreSettings()
    assert settings.lm_api_key is not None
    assert settings.lm_api_key.get_secret_value() == DEV_LM_API_KEY
    assert settings.corpus_dir.is_dir()
    assert (settings.dataset_dir / "dev.jsonl").is_file()


def test_environment_overrides_every_field(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("LM_MODEL", "openai/gpt-4o-mini")
    monkeypatch.setenv("LM_API_BASE", "")
    monkeypatch.setenv("LM_API_KEY", "sk-test")
    monkeypatch.setenv("CORPUS_DIR", str(tmp_path))
    monkeypatch.setenv("RETRIEVER_K", "5")
    settings = CoreSettings()
    assert settings.lm_model == "openai/gpt-4o-mini"
    assert not settings.lm_api_base
    assert settings.lm_api_key.get_secret_value() == "sk-test"
    assert settings.corpus_dir == tmp_path
    assert settings.retriever_k == 5


def test_prod_refuses_to_start_without_an_explicit_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LM_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="LM_API_KEY must be set when APP_ENV=prod"):
        CoreSettings(app_env="prod")


def test_an_empty_api_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LM_API_KEY", "  ")
    with pytest.raises(ValidationError, match="LM_API_KEY is empty"):
        CoreSettings()


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("RETRIEVER_K", "0", "retriever_k"),
        ("LM_TEMPERATURE", "3", "lm_temperature"),
        ("LM_TIMEOUT_S", "-1", "lm_timeout_s"),
        ("APP_ENV", "staging", "app_env"),
        ("LM_SERVER_PORT", "not-a-port", "lm_server_port"),
    ],
)
def test_bad_values_name_the_field(monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as error:
        CoreSettings()
    assert field in str(error.value)


def test_the_bundled_model_file_is_found_without_importing_its_package() -> None:
    path = bundled_gguf_path()
    assert path is not None
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000
