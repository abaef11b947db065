"""The worker's domain errors. Each is an HTTP status and code for the jobs API (through the shared kit's
handlers, `qa_core.web`), and a readable reason on a failed job."""

from __future__ import annotations

from qa_core.web.errors import ServiceError


class WorkerError(ServiceError):
    """Base class; `code` is the stable machine-readable name clients switch on."""

    code = "worker_error"
    status = 500


class JobNotFound(WorkerError):
    code, status = "job_not_found", 404


class JobNotCancellable(WorkerError):
    code, status = "job_not_cancellable", 409


class BudgetOutOfRange(WorkerError):
    code, status = "budget_out_of_range", 422


class DatasetUnavailable(WorkerError):
    """The training or dev data is missing, unreadable or too small to optimize on."""

    code, status = "dataset_unavailable", 422


class FinetuneUnavailable(WorkerError):
    """A weight optimizer was asked for, but this deployment cannot train (no local model, no adapters folder)."""

    code, status = "finetune_unavailable", 422


class OptimizationFailed(WorkerError):
    code, status = "optimization_failed", 500


class QueueUnavailable(WorkerError):
    code, status = "queue_unavailable", 503


class LMUnavailable(WorkerError):
    """The LM did not answer a probe call: the job fails before it spends anything."""

    code, status = "lm_unavailable", 503


class JobAborted(BaseException):
    """Raised inside a running job to stop it (cancelled, timed out, lease lost).

    A BaseException on purpose: DSPy's callbacks and optimizers catch `Exception` to keep going past a
    bad example, and this must not be caught that way.
    """

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state, self.reason = state, reason
