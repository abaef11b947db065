"""Every knob of the optimizer-worker, read once at start-up and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from qa_core import contracts
from qa_core.database import DatabaseSettings

STATE_DIR = Path(".state")

# --8<-- [start:budget-ranges]
# What `budget` means for each optimizer, and the range that finishes in minutes on SmolLM2 with 2 cores.
BUDGET_MEANING: dict[contracts.OptimizerName, str] = {
    "bootstrap_fewshot": "max bootstrapped demos",
    "bootstrap_random_search": "candidate programs",
    "miprov2": "max bootstrapped demos per candidate (auto='light' sets the trials)",
    "gepa": "max metric calls",
    "simba": "optimization steps",
    "bootstrap_finetune": "labelled training conversations the LoRA adapter learns from",
    "better_together": "labelled training conversations of the weight step (p -> w -> p)",
}
DEFAULT_BUDGET_RANGES: dict[contracts.OptimizerName, tuple[int, int]] = {
    "bootstrap_fewshot": (1, 8),
    "bootstrap_random_search": (1, 8),
    "miprov2": (1, 4),
    "gepa": (10, 400),
    "simba": (1, 8),
    # About 6 s per conversation per epoch on one core: 80 x 2 epochs is a 20-minute job.
    "bootstrap_finetune": (2, 200),
    "better_together": (2, 200),
}
# --8<-- [end:budget-ranges]


# --8<-- [start:settings]
class Settings(DatabaseSettings):
    """optimizer-worker settings: the jobs database, the queue, and how jobs optimize and decide."""

    database_url: str = Field(
        f"sqlite:///{STATE_DIR}/optimizer-jobs.db",
        description="SQLAlchemy URL of the jobs database. `postgresql://...` uses psycopg 3.",
    )
    broker_url: str = Field(
        f"sqla+sqlite:///{STATE_DIR}/optimizer-broker.db",
        description="Celery broker. `redis://...` in compose; the default is kombu's SQLAlchemy transport on "
        "SQLite, a real queue that needs no server.",
    )
    broker_visibility_timeout_s: int = Field(
        3600, ge=5, description="Redis only: an unacknowledged message is delivered again after this long."
    )
    queue_name: str = Field("optimizer-jobs", min_length=1, description="Celery queue the jobs go to.")

    lease_timeout_s: float = Field(
        60.0, gt=0, description="A running job whose heartbeat is older than this is considered dead."
    )
    heartbeat_interval_s: float = Field(5.0, gt=0, description="How often a running job renews its lease.")
    recovery_interval_s: float = Field(
        15.0, gt=0, description="How often the worker looks for dead jobs (and checks the auto-trigger)."
    )
    max_attempts: int = Field(2, ge=1, le=10, description="Runs of one job before a dead worker fails it.")
    job_timeout_s: float = Field(3600.0, gt=0, description="A job running longer than this is failed.")

    promotion_margin: float = Field(
        0.02,
        ge=-1.0,
        le=1.0,
        description="The candidate becomes challenger only if its dev score >= champion's + this margin "
        "(-1 registers every candidate: demos and end-to-end tests only, refused when APP_ENV=prod).",
    )
    auto_trigger_min_ratings: int = Field(
        0, ge=0, description="Enqueue a job once this many new rated traces arrived since the last job; 0 = off."
    )
    auto_trigger_optimizer: contracts.OptimizerName = Field(
        "bootstrap_fewshot", description="Optimizer of automatically triggered jobs."
    )
    auto_trigger_budget: int = Field(2, ge=1, description="Budget of automatically triggered jobs.")

    budget_ranges: dict[contracts.OptimizerName, tuple[int, int]] = Field(
        default_factory=lambda: dict(DEFAULT_BUDGET_RANGES),
        description="Allowed budget per optimizer, as JSON; keys given override the defaults.",
    )
    optimizer_threads: int = Field(2, ge=1, le=32, description="Threads an optimizer runs the program on.")
    eval_threads: int = Field(2, ge=1, le=32, description="Threads of the champion/candidate dev evaluation.")
    max_labeled_demos: int = Field(
        2, ge=0, le=16, description="Labelled demos optimizers may add (built with the retrieved passages)."
    )
    random_search_demos: int = Field(2, ge=1, le=8, description="Bootstrapped demos per random-search candidate.")
    valset_size: int = Field(
        8, ge=2, le=200, description="Train examples random search, MIPROv2 and GEPA score candidates on (never dev)."
    )
    simba_batch_size: int = Field(6, ge=2, le=64, description="SIMBA's mini-batch size.")
    simba_candidates: int = Field(2, ge=1, le=16, description="New programs SIMBA tries per step.")
    gepa_reflection_lm_model: str | None = Field(
        None, description="LiteLLM model GEPA reflects with; default: the task LM (LM_MODEL)."
    )
    gepa_reflection_lm_api_base: str | None = Field(None, description="Base URL of the reflection LM.")
    gepa_reflection_lm_api_key: SecretStr | None = Field(None, description="API key of the reflection LM.")
    gepa_reflection_max_tokens: int = Field(512, ge=64, le=32_000, description="Tokens per reflection call.")

    finetune_epochs: int = Field(2, ge=1, le=10, description="Passes of LoRA training over the conversations.")
    finetune_rank: int = Field(16, ge=1, le=128, description="LoRA rank of every projection.")
    finetune_learning_rate: float = Field(1e-3, gt=0, le=0.1, description="AdamW learning rate of LoRA training.")
    finetune_accumulation: int = Field(8, ge=1, le=64, description="Conversations per LoRA optimizer step.")
    finetune_max_tokens: int = Field(
        1024, ge=128, le=8192, description="Longer training conversations are left out (never cut)."
    )
    finetune_threads: int = Field(2, ge=1, le=64, description="CPU threads torch trains with.")
    finetune_work_dir: Path = Field(
        STATE_DIR / "finetune", description="Cache of the dequantized base model and each job's PEFT adapter."
    )

    min_train_examples: int = Field(2, ge=1, description="Fewer training examples than this fails the job.")
    feedback_max_traces: int = Field(5000, ge=1, description="Most recent traces read for feedback per job.")
    optimization_experiment_name: str = Field(
        "dspy-qa-optimization", min_length=1, description="MLflow experiment of the job runs (not the QA traces)."
    )
    mlflow_ui_url: str | None = Field(
        None, description="Public MLflow URL for run links in the API; default: MLFLOW_TRACKING_URI."
    )
    log_eval_traces: bool = Field(False, description="Log a trace per evaluated dev example (slow, verbose).")

    api_host: str = Field("127.0.0.1", description="Interface the jobs API binds.")
    api_port: int = Field(8001, ge=1, le=65535, description="Port of the jobs API.")
    api_db_threads: int = Field(8, ge=1, le=64, description="Threads the API uses for database and queue calls.")

    @field_validator("budget_ranges")
    @classmethod
    def _merge_budget_ranges(cls, ranges: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        merged = {**DEFAULT_BUDGET_RANGES, **ranges}
        for name, (low, high) in merged.items():
            if not 1 <= low <= high:
                raise ValueError(f"budget range for {name} must satisfy 1 <= low <= high, got {low}..{high}")
        return merged

    @model_validator(mode="after")
    def _no_promotion_of_worse_candidates_in_prod(self) -> Settings:
        if self.app_env == "prod" and self.promotion_margin < 0:
            raise ValueError("PROMOTION_MARGIN must be >= 0 when APP_ENV=prod: a worse candidate is never offered")
        return self

    @model_validator(mode="after")
    def _reflection_key_explicit_outside_dev(self) -> Settings:
        if self.app_env == "prod" and self.gepa_reflection_lm_model and self.gepa_reflection_lm_api_key is None:
            raise ValueError("GEPA_REFLECTION_LM_API_KEY must be set when APP_ENV=prod and a reflection LM is set")
        return self

    @property
    def run_link_base(self) -> str:
        return (self.mlflow_ui_url or self.mlflow_tracking_uri).rstrip("/")


# --8<-- [end:settings]
