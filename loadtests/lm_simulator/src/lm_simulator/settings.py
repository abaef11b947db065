"""Simulator settings: every option has a default, an env var (LM_SIM_*) and a CLI flag (see __main__)."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    """Behaviour of one simulator process. Env vars use the prefix LM_SIM_, e.g. LM_SIM_LATENCY_MS=50."""

    model_config = SettingsConfigDict(env_prefix="LM_SIM_", extra="ignore")

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8090, ge=0, le=65535, description="TCP port to bind (0 picks a free port).")
    latency_ms: float = Field(
        200.0, ge=0.0, description="Mean delay before answering (streams: before the first chunk)."
    )
    jitter_ms: float = Field(
        0.0, ge=0.0, description="Uniform jitter added to the latency: each delay is latency +- jitter."
    )
    tokens_per_second: float = Field(
        50.0, ge=0.0, description="Pace of streamed tokens after the first chunk; 0 sends them unpaced."
    )
    error_rate_429: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests answered 429 (rate limited) with Retry-After."
    )
    error_rate_500: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests answered 500 (after the latency delay)."
    )
    timeout_rate: float = Field(
        0.0, ge=0.0, le=1.0, description="Share of requests held for timeout_hold_s and then dropped."
    )
    timeout_hold_s: float = Field(30.0, ge=0.0, description="How long a 'timeout' request is held.")
    retry_after_s: int = Field(1, ge=0, description="Value of the Retry-After header on 429 answers.")
    seed: int = Field(0, description="Seed of the RNG that draws errors and jitter.")
    model: str = Field(
        "lm-simulator", description="Model id listed by /v1/models; answers echo the model the request names."
    )
    log_level: str = Field("warning", description="Uvicorn log level.")

    @model_validator(mode="after")
    def _rates_fit(self) -> SimulatorSettings:
        # One uniform draw picks the outcome, so the three shares must fit in [0, 1].
        if self.error_rate_429 + self.error_rate_500 + self.timeout_rate > 1.0 + 1e-9:
            raise ValueError("error_rate_429 + error_rate_500 + timeout_rate must not exceed 1.0")
        return self
