"""Names that cross service boundaries.

The API, the worker and the feedback UI all read and write the same MLflow objects. Each name is
spelled here once, so a rename cannot leave one service talking past another.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, Field

# --8<-- [start:registry-names]
# The registered model that holds every program version, and the two aliases the A/B router reads.
REGISTERED_MODEL_NAME: Final = "qa-program"
EXPERIMENT_NAME: Final = "dspy-qa"
CHAMPION_ALIAS: Final = "champion"
CHALLENGER_ALIAS: Final = "challenger"
Variant = Literal["champion", "challenger"]
VARIANTS: Final[tuple[Variant, ...]] = (CHAMPION_ALIAS, CHALLENGER_ALIAS)

# Tags on the registered model that steer the experiment; the feedback UI writes them, qa-api reads them.
TAG_CHALLENGER_SHARE: Final = "challenger_share"
TAG_EXPERIMENT_SALT: Final = "experiment_salt"
# --8<-- [end:registry-names]

# --8<-- [start:trace-keys]
# Tags on every trace qa-api writes, so a trace can be tied to the program that produced it.
TRACE_TAG_VARIANT: Final = "qa.variant"
TRACE_TAG_MODEL_VERSION: Final = "qa.model_version"
TRACE_TAG_REQUEST_ID: Final = "qa.request_id"
TRACE_TAG_SESSION_ID: Final = "qa.session_id"
TRACE_TAG_SYNTHETIC: Final = "qa.synthetic"
TRACE_TAG_ENDPOINT: Final = "qa.endpoint"
# Standard MLflow trace metadata keys for the session and user, so MLflow's own UI groups by them.
TRACE_METADATA_SESSION: Final = "mlflow.trace.session"
TRACE_METADATA_USER: Final = "mlflow.trace.user"
# --8<-- [end:trace-keys]

# --8<-- [start:assessment-names]
# Human assessments logged on traces; the optimizer reads them back as training data.
ASSESSMENT_USER_RATING: Final = "user_rating"
ASSESSMENT_CORRECTED_ANSWER: Final = "corrected_answer"
ASSESSMENT_PAIRWISE: Final = "pairwise_preference"
# --8<-- [end:assessment-names]

# Tags on a registered model version, written by the worker when it registers a candidate.
VERSION_TAG_OPTIMIZER: Final = "optimizer"
VERSION_TAG_DATASET_HASH: Final = "dataset_hash"
VERSION_TAG_DEV_SCORE: Final = "dev_score"
VERSION_TAG_CHAMPION_DEV_SCORE: Final = "champion_dev_score"
VERSION_TAG_JOB_ID: Final = "job_id"

# Artifact names inside a run.
PROGRAM_ARTIFACT: Final = "program.json"
PROGRAM_ARTIFACT_DIR: Final = "program"
DSPY_MODEL_ARTIFACT_DIR: Final = "model"

# HTTP headers shared by qa-api, its clients and the load tests.
HEADER_FORCE_VARIANT: Final = "X-Force-Variant"
HEADER_SESSION_ID: Final = "X-Session-Id"
HEADER_REQUEST_ID: Final = "X-Request-Id"
HEADER_SYNTHETIC: Final = "X-Synthetic"
HEADER_FORCE_TRACE: Final = "X-Force-Trace"


# --8<-- [start:answer-schema]
class Citation(BaseModel):
    """A passage the answer relied on, as qa-api returns it."""

    id: str = Field(description="Stable passage id, '<doc-id>#<chunk>'.")
    doc_id: str
    title: str
    text: str


class AnswerResponse(BaseModel):
    """What qa-api returns for one question; the feedback UI renders it."""

    answer: str
    citations: list[Citation]
    variant: Variant
    model_version: str = Field(description="Registry version number, or 'baseline' for the shipped program.")
    trace_id: str | None = Field(description="MLflow trace id; None when the request was not sampled.")
    request_id: str


# --8<-- [end:answer-schema]

# Share of traffic the challenger gets while the registered model carries no share tag.
DEFAULT_CHALLENGER_SHARE: Final = 0.1
# Tag on the registered model that remembers the champion a promotion replaced, for roll back.
TAG_PREVIOUS_CHAMPION: Final = "previous_champion"
# The model_version reported for the program shipped in the repo, used when the registry has none.
BASELINE_VERSION: Final = "baseline"


# --8<-- [start:answer-request]
class AnswerRequest(BaseModel):
    """What a client sends to `POST /v1/answer` and `/v1/answer/stream`. qa-api enforces its own limits
    (from settings) on top of these shapes."""

    question: str = Field(min_length=1, description="The question, in plain text.")
    session_id: str | None = Field(
        None, min_length=1, max_length=128, description="Stable id of the user's session: makes A/B assignment sticky."
    )


# --8<-- [end:answer-request]


# --8<-- [start:jobs-contract]
# The optimizer-worker's jobs API, as the feedback UI and other clients see it.
OptimizerName = Literal[
    "bootstrap_fewshot", "bootstrap_random_search", "miprov2", "gepa", "simba", "bootstrap_finetune", "better_together"
]
JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
Decision = Literal["promoted", "not_promoted"]


class DatasetOptions(BaseModel):
    include_feedback: bool = Field(True, description="Add human-rated answers and corrections from MLflow.")
    train_limit: int | None = Field(None, ge=1, le=10_000, description="Use at most this many training examples.")
    dev_limit: int | None = Field(None, ge=1, le=1_000, description="Evaluate on at most this many dev examples.")


class JobCreate(BaseModel):
    optimizer: OptimizerName
    budget: int = Field(ge=1, description="The optimizer's main knob (demos, candidates, steps); range per optimizer.")
    dataset: DatasetOptions = Field(default_factory=DatasetOptions)
    idempotency_key: str | None = Field(None, min_length=1, max_length=128)


class JobProgress(BaseModel):
    stage: str
    percent: float = Field(ge=0, le=100)


class JobView(BaseModel):
    id: str
    state: JobState
    optimizer: OptimizerName
    budget: int
    dataset: DatasetOptions
    progress: JobProgress
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    mlflow_run_id: str | None = None
    mlflow_run_url: str | None = None
    scores: dict[str, float] = Field(default_factory=dict, description="e.g. candidate_dev, champion_dev.")
    decision: Decision | None = None
    decision_reason: str | None = None
    registered_version: str | None = None
    error: str | None = None
    attempts: int = Field(0, description="Runs of this job so far; above 1 means a worker died and it was retried.")
    dataset_hash: str | None = Field(None, description="sha256 of the training set the job optimized on.")
    dataset_counts: dict[str, int] = Field(
        default_factory=dict, description="Where the training examples came from, and how many were dropped."
    )


class JobList(BaseModel):
    jobs: list[JobView]


# --8<-- [end:jobs-contract]
