"""A running job's pulse: progress, the lease heartbeat, and the way a cancel or timeout reaches the job.

The pipeline updates an in-memory `Progress`; one background thread writes it to the database every
few seconds and renews the lease at the same time. The LM callback counts calls (the progress bar of
the optimize stage) and stops the job at its next LM call once it is cancelled, timed out, or its
lease was taken over.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from dspy.utils.callback import BaseCallback

from optimizer_worker.errors import JobAborted
from optimizer_worker.jobs import JobStore

log = logging.getLogger(__name__)

# --8<-- [start:stages]
# Each stage owns a slice of the progress bar: (start %, end %).
STAGES: dict[str, tuple[float, float]] = {
    "starting": (0, 2),
    "checking_lm": (2, 4),
    "building_trainset": (4, 8),
    "evaluating_champion": (8, 25),
    "optimizing": (25, 75),
    # Weight optimizers: inside `optimizing`, the LoRA provider's own stages.
    "dequantizing": (27, 30),
    "training": (30, 70),
    "exporting": (70, 73),
    "evaluating_candidate": (75, 92),
    "logging": (92, 97),
    "registering": (97, 100),
}
# --8<-- [end:stages]


class Progress(BaseCallback):
    """Shared between the pipeline (writer of stage and totals), LM threads (counting) and the heartbeat."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.stage = "starting"
        self.lm_calls = 0
        self._stage_calls = 0
        self._expected = 0
        self.abort: JobAborted | None = None

    def enter(self, stage: str, expected_lm_calls: int = 0) -> None:
        with self._lock:
            self.stage, self._stage_calls, self._expected = stage, 0, expected_lm_calls

    @property
    def percent(self) -> float:
        with self._lock:
            start, end = STAGES.get(self.stage, (0, 100))
            done = min(0.95, self._stage_calls / self._expected) if self._expected else 0.0
            return start + (end - start) * done

    def advance(self) -> None:
        """One unit of work that is not an LM call (a training step)."""
        with self._lock:
            self._stage_calls += 1

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if self.abort is not None:
            raise self.abort  # a BaseException: DSPy's callback wrapper only swallows Exception

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        with self._lock:
            self.lm_calls += 1
            self._stage_calls += 1


class TrainingStopped(Exception):
    """A cancel or timeout, raised inside the training thread: DSPy's TrainingJob reports an Exception
    as the job's result, where a BaseException would end the thread and leave the job waiting forever."""


class Heartbeat:
    """Renews the lease and publishes progress until stopped; flags an abort when the job must stop."""

    def __init__(
        self, store: JobStore, job_id: str, owner: str, progress: Progress, interval_s: float, timeout_s: float
    ):
        self.store, self.job_id, self.owner, self.progress = store, job_id, owner, progress
        self.interval_s, self.deadline = interval_s, time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def beat(self) -> None:
        job = self.store.heartbeat(self.job_id, self.owner, self.progress.stage, self.progress.percent)
        if job is None:
            self.progress.abort = JobAborted("lost", "another worker took over this job's lease")
        elif job.cancel_requested:
            self.progress.abort = JobAborted("cancelled", "cancelled on request")
        elif time.monotonic() > self.deadline:
            self.progress.abort = JobAborted("failed", f"the job ran longer than JOB_TIMEOUT_S={self.timeout_s:g} s")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception:
                # A database blip must not kill the job; the lease has slack for a few missed beats.
                log.warning("heartbeat for job %s failed", self.job_id, exc_info=True)

    def check(self) -> None:
        """Between stages: stop now if the job was cancelled or timed out."""
        if self.progress.abort is not None:
            raise self.progress.abort
