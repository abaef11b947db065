"""qa-api settings: the shared core settings plus the serving knobs."""

from __future__ import annotations

from pydantic import Field

from qa_core.settings import CoreSettings


# --8<-- [start:settings]
class Settings(CoreSettings):
    """Every knob of qa-api, read from the environment once at start-up."""

    host: str = Field("127.0.0.1", description="Interface to bind.")
    port: int = Field(8000, ge=1, le=65535, description="Port to listen on.")

    max_inflight: int = Field(
        32, ge=1, le=10_000, description="Questions in progress at once; past it, 429 with Retry-After."
    )
    retry_after_s: int = Field(1, ge=1, le=3600, description="Retry-After sent with 429 and 503.")
    request_timeout_s: float = Field(30.0, gt=0, description="Deadline of one question, LM calls included.")
    max_question_chars: int = Field(1000, ge=1, le=100_000, description="Longest accepted question.")
    max_batch_size: int = Field(16, ge=1, le=1000, description="Most questions in one batch request.")
    batch_concurrency: int = Field(4, ge=1, le=256, description="Questions of one batch answered at once.")
    max_body_bytes: int = Field(65_536, ge=1024, description="Largest accepted request body.")

    registry_poll_s: float = Field(10.0, gt=0, description="How often aliases and the traffic share are re-read.")
    registry_startup_timeout_s: float = Field(
        10.0, gt=0, description="How long start-up waits for MLflow before serving the baseline."
    )
    use_registry: bool = Field(True, description="Load programs from the MLflow registry (off: baseline only).")

    trace_sampling_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="Share of requests traced to MLflow; forced requests are always traced."
    )
    trace_queue_max: int = Field(
        5000, ge=1, le=1_000_000, description="Traces waiting for export; past it they are dropped and counted."
    )
    mcp_enabled: bool = Field(True, description="Serve the QA tools over MCP (streamable HTTP) at /mcp.")
    shutdown_grace_s: float = Field(20.0, ge=0, description="How long in-flight requests may finish at shutdown.")
    log_level: str = Field("info", description="Log level of the service and uvicorn.")


# --8<-- [end:settings]
