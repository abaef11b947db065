"""The command line mirrors the settings, and the settings reject impossible rates."""

from __future__ import annotations

import pydantic
import pytest

from lm_simulator.__main__ import build_parser, parse_settings
from lm_simulator.settings import SimulatorSettings


def test_every_setting_has_a_flag_and_a_description() -> None:
    flags = {a.dest for a in build_parser()._actions}
    for name, info in SimulatorSettings.model_fields.items():
        assert name in flags
        assert info.description


def test_flags_override_env_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LM_SIM_JITTER_MS", "15")
    monkeypatch.setenv("LM_SIM_LATENCY_MS", "999")
    settings = parse_settings(["--latency-ms", "5", "--error-rate-429", "0.25", "--model", "sim-x"])
    assert settings.latency_ms == 5
    assert settings.jitter_ms == 15
    assert settings.error_rate_429 == 0.25
    assert settings.model == "sim-x"
    assert settings.port == 8090


def test_defaults() -> None:
    settings = SimulatorSettings()
    assert (settings.host, settings.port, settings.latency_ms, settings.tokens_per_second) == (
        "127.0.0.1",
        8090,
        200,
        50,
    )
    assert settings.timeout_hold_s == 30
    assert settings.model == "lm-simulator"


@pytest.mark.parametrize(
    "options",
    [{"error_rate_429": 1.5}, {"error_rate_500": -0.1}, {"error_rate_429": 0.6, "timeout_rate": 0.6}],
)
def test_bad_rates_are_rejected(options: dict[str, float]) -> None:
    with pytest.raises(pydantic.ValidationError):
        SimulatorSettings(**options)
