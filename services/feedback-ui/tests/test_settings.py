"""Settings: no secret has a default outside dev, and the README documents every knob."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from feedback_ui.auth import hash_password, verify_password
from feedback_ui.main import main
from feedback_ui.settings import DEV_SESSION_SECRET, Settings
from qa_core.settings import CoreSettings

USER = '[{"username": "ops", "password_hash": "%s", "role": "admin"}]'


def test_dev_mode_has_working_defaults() -> None:
    settings = Settings(_env_file=None, app_env="dev")
    assert settings.session_secret.get_secret_value() == DEV_SESSION_SECRET
    assert {u.username for u in settings.users} == {"admin", "annotator"}
    assert verify_password(settings.users[0].password_hash.get_secret_value(), "admin")
    assert settings.cookie_secure is False
    assert settings.port == 8002
    assert settings.worker_api_url == "http://127.0.0.1:8001"


@pytest.mark.parametrize("env", ["test", "prod"])
def test_outside_dev_the_session_secret_and_the_users_must_be_given(env: str) -> None:
    users = USER % hash_password("pw")
    with pytest.raises(ValidationError, match="SESSION_SECRET must be set"):
        Settings(_env_file=None, app_env=env, users=users, lm_api_key="k")
    with pytest.raises(ValidationError, match="USERS"):
        Settings(_env_file=None, app_env=env, session_secret="s" * 40, lm_api_key="k")
    settings = Settings(_env_file=None, app_env=env, users=users, session_secret="s" * 40, lm_api_key="k")
    assert [u.username for u in settings.users] == ["ops"]
    assert settings.cookie_secure is (env == "prod")


def test_weak_secrets_and_clear_text_passwords_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32"):
        Settings(_env_file=None, session_secret="short")
    with pytest.raises(ValidationError, match="argon2"):
        Settings(_env_file=None, users='[{"username": "ops", "password_hash": "hunter2", "role": "admin"}]')
    with pytest.raises(ValidationError, match="role"):
        Settings(_env_file=None, users=USER.replace("admin", "root") % hash_password("pw"))
    with pytest.raises(ValidationError, match="sha256"):
        Settings(_env_file=None, api_tokens='[{"name": "bot", "token_sha256": "abc", "role": "annotator"}]')


def test_the_cli_makes_hashes_and_tokens_the_settings_accept(capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("s3cret\n"))
    main(["hash-password"])
    digest = capsys.readouterr().out.strip()
    assert verify_password(digest, "s3cret")
    main(["new-token", "ci-bot", "--role", "annotator"])
    entry = capsys.readouterr().out.splitlines()[-1].removeprefix("API_TOKENS entry: ")
    settings = Settings(_env_file=None, api_tokens=f"[{entry}]")
    assert settings.api_tokens[0].name == "ci-bot"


def test_readme_lists_every_setting() -> None:
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    own = [name for name in Settings.model_fields if name not in CoreSettings.model_fields]
    missing = [name.upper() for name in own if f"| `{name.upper()}` |" not in readme]
    assert missing == []
