"""One optimization job, as one MLflow run: build the data, optimize, evaluate both programs, decide, register.

`execute` is the whole job: it turns every way a job can end into a row state and a readable reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import dspy
import mlflow

from optimizer_worker import optimizers, registration, trainset
from optimizer_worker.errors import JobAborted, LMUnavailable, WorkerError
from optimizer_worker.finetune import provider as training
from optimizer_worker.jobs import JobStore
from optimizer_worker.models import Job
from optimizer_worker.progress import Heartbeat, Progress, TrainingStopped
from optimizer_worker.settings import Settings
from qa_core import contracts, registry
from qa_core.dataset import DatasetError, load_split
from qa_core.evaluation import EvaluationReport, evaluate_program
from qa_core.lm import build_adapter, build_lm, configure_dspy
from qa_core.program import GroundedQA

log = logging.getLogger(__name__)


# --8<-- [start:prepare]
def prepare_process(settings: Settings) -> None:
    """Once per worker process, in its main thread: DSPy's defaults and MLflow's DSPy autologging.

    The autolog callback keeps per-compile state, which is why each process runs one compile.
    """
    configure_dspy(settings)
    mlflow.dspy.autolog(log_compiles=True, log_evals=True, log_traces_from_eval=settings.log_eval_traces, silent=True)


# --8<-- [end:prepare]


# --8<-- [start:execute]
def execute(settings: Settings, store: JobStore, job: Job, owner: str) -> str:
    """Run a claimed job to a terminal state; returns that state. Never raises for a job's own failure."""
    progress = Progress()
    heartbeat = Heartbeat(store, job.id, owner, progress, settings.heartbeat_interval_s, settings.job_timeout_s)
    with heartbeat:
        try:
            outcome = run_pipeline(settings, store, job, owner, progress, heartbeat)
        except JobAborted as abort:
            if abort.state == "lost":  # another worker owns the job now; it will write the result
                log.warning("job %s: %s", job.id, abort.reason)
                return "lost"
            store.finish(job.id, owner, abort.state, error=abort.reason if abort.state == "failed" else None)
            return abort.state
        except (WorkerError, DatasetError) as exc:
            code = getattr(exc, "code", "dataset_unavailable")
            store.finish(job.id, owner, "failed", error=_scrub(f"{code}: {exc}", settings))
            return "failed"
        except Exception as exc:  # the job failed; the worker must live on and say why
            log.exception("job %s failed", job.id)
            store.finish(job.id, owner, "failed", error=_scrub(f"{type(exc).__name__}: {exc}", settings))
            return "failed"
    store.finish(job.id, owner, "succeeded", **outcome)
    return "succeeded"


# --8<-- [end:execute]


def _scrub(message: str, settings: Settings) -> str:
    """Errors are shown to users; make sure no key an LM library echoed ends up in one."""
    for secret in (settings.lm_api_key, settings.gepa_reflection_lm_api_key):
        if secret is not None and secret.get_secret_value():
            message = message.replace(secret.get_secret_value(), "***")
    return message[:2000]


def run_pipeline(
    settings: Settings, store: JobStore, job: Job, owner: str, progress: Progress, heartbeat: Heartbeat
) -> dict[str, Any]:
    client = registry.configure_mlflow(settings, max_retries=3)
    # --8<-- [start:resume]
    # A retry after a crash: if the first attempt already registered its version, finish from it.
    earlier = registration.version_for_job(client, settings.registered_model_name, job.id)
    if earlier is not None:
        progress.enter("registering")
        registration.register_challenger(client, settings, job.id, earlier.run_id, None, {})
        return _outcome_from_version(earlier)
    # --8<-- [end:resume]

    progress.enter("checking_lm")
    check_lm(settings)
    heartbeat.check()

    # --8<-- [start:trainset]
    progress.enter("building_trainset")
    options = contracts.DatasetOptions.model_validate(job.dataset_options)
    champion, champion_version = registration.load_champion(client, settings)
    feedback: list[trainset.FeedbackItem] = []
    if options.include_feedback:
        feedback, _seen = trainset.read_feedback(settings.mlflow_experiment_name, settings.feedback_max_traces)
    data = trainset.build_trainset(champion, settings.dataset_dir, feedback, options.train_limit)
    plan = optimizers.plan(settings, job.optimizer, job.budget, data.examples, teacher=champion)  # type: ignore[arg-type]
    devset = load_split(settings.dataset_dir, "dev", options.dev_limit)
    store.record(job.id, owner, dataset_hash=data.dataset_hash, dataset_counts=data.counts)
    # --8<-- [end:trainset]

    mlflow.set_experiment(settings.optimization_experiment_name)
    run_name = f"{job.optimizer}-b{job.budget}-{job.id[:8]}"
    tags = {contracts.VERSION_TAG_JOB_ID: job.id, "attempt": str(job.attempts), "trigger": job.trigger}
    with mlflow.start_run(run_name=run_name, tags=tags) as run:
        store.record(job.id, owner, mlflow_run_id=run.info.run_id, mlflow_experiment_id=run.info.experiment_id)
        # --8<-- [start:log-inputs]
        mlflow.log_params(
            {
                "optimizer": job.optimizer,
                "budget": job.budget,
                **{f"optimizer.{k}": v for k, v in plan.params.items()},
                "dataset_hash": data.dataset_hash,
                **{f"data.{k}": v for k, v in sorted(data.counts.items())},
                "dev_examples": len(devset),
                "champion_version": champion_version,
                "promotion_margin": settings.promotion_margin,
                "lm_model": settings.lm_model,
            }
        )
        mlflow.log_dict({"examples": data.rows}, "data/trainset.json")
        # --8<-- [end:log-inputs]

        progress.enter("evaluating_champion", len(devset) * settings.grounding_attempts)
        champion_report = evaluate(champion, devset, settings, progress, "champion", champion_version)
        heartbeat.check()

        # --8<-- [start:optimize]
        progress.enter("optimizing", plan.expected_lm_calls)
        student = champion.deepcopy()
        if plan.tunes_weights:
            reporter = training_reporter(progress, run)
            student.set_lm(training.tunable_lm(settings, training.adapter_name(job.id), reporter))
        started, calls_before = time.perf_counter(), progress.lm_calls
        callbacks = [*dspy.settings.callbacks, progress]  # MLflow's autolog callback, plus ours
        try:
            with dspy.context(lm=build_lm(settings), adapter=build_adapter(settings), callbacks=callbacks):
                candidate = optimizers.compile_plan(plan, student)
        except Exception:
            heartbeat.check()  # a cancel that stopped training surfaces as the training job's error
            raise
        mlflow.log_metrics(
            {
                "optimize_wall_time_s": time.perf_counter() - started,
                "optimize_lm_calls": progress.lm_calls - calls_before,
            }
        )
        # --8<-- [end:optimize]
        heartbeat.check()

        progress.enter("evaluating_candidate", len(devset) * settings.grounding_attempts)
        candidate_report = evaluate(candidate, devset, settings, progress, "candidate", "candidate")
        heartbeat.check()

        candidate_score, champion_score = candidate_report.scores["combined"], champion_report.scores["combined"]
        decision, reason = decide(candidate_score, champion_score, settings.promotion_margin)
        mlflow.log_metric("candidate_minus_champion", candidate_score - champion_score)
        mlflow.set_tags({"decision": decision, "decision_reason": reason})

        progress.enter("logging")
        model_id = registration.log_candidate(candidate, settings)
        outcome: dict[str, Any] = {
            "scores": {"candidate_dev": candidate_score, "champion_dev": champion_score},
            "decision": decision,
            "decision_reason": reason,
        }
        # --8<-- [start:register-step]
        if decision == "promoted":
            progress.enter("registering")
            version_tags = {
                contracts.VERSION_TAG_OPTIMIZER: job.optimizer,
                contracts.VERSION_TAG_DATASET_HASH: data.dataset_hash,
                contracts.VERSION_TAG_DEV_SCORE: f"{candidate_score:.4f}",
                contracts.VERSION_TAG_CHAMPION_DEV_SCORE: f"{champion_score:.4f}",
            }
            version = registration.register_challenger(
                client, settings, job.id, run.info.run_id, model_id, version_tags
            )
            outcome["registered_version"] = str(version.version)
            mlflow.set_tag("registered_version", str(version.version))
        # --8<-- [end:register-step]
    return outcome


# --8<-- [start:training-reporter]
def training_reporter(progress: Progress, run: Any) -> Callable[[str, dict[str, Any]], None]:
    """The LoRA provider's events, as job progress and as the run's `train_loss` curve.

    Training runs in DSPy's TrainingJob thread, where MLflow's active run is not set: log by run id.
    A cancel stops training at its next step, as an Exception the training job reports.
    """
    client = mlflow.MlflowClient()

    def report(stage: str, detail: dict[str, Any]) -> None:
        if progress.abort is not None:
            raise TrainingStopped(progress.abort.reason)
        if stage == "training":
            if detail["step"] == 1:
                progress.enter("training", detail["steps"])
            progress.advance()
            client.log_metric(run.info.run_id, "train_loss", detail["loss"], step=detail["step"])
        elif stage in ("dequantizing", "exporting"):
            progress.enter(stage)
        elif stage == "done":
            client.log_metric(run.info.run_id, "train_examples", detail["examples"])
            client.log_metric(run.info.run_id, "train_seconds", detail["seconds"])
            progress.enter("optimizing")

    return report


# --8<-- [end:training-reporter]


# --8<-- [start:decide]
def decide(candidate: float, champion: float, margin: float) -> tuple[contracts.Decision, str]:
    """Promote only a candidate that beats the champion on the same dev split by the margin."""
    if candidate >= champion + margin - 1e-9:
        return "promoted", f"candidate {candidate:.4f} >= champion {champion:.4f} + margin {margin:g}"
    return "not_promoted", (
        f"candidate {candidate:.4f} did not beat champion {champion:.4f} by the margin {margin:g}; "
        "the champion stays and no version was registered"
    )


# --8<-- [end:decide]


# --8<-- [start:evaluate]
def evaluate(
    program: GroundedQA, devset: list[dspy.Example], settings: Settings, progress: Progress, role: str, label: str
) -> EvaluationReport:
    """Score one program on the dev split in a child run; the scores also go to the job's run as `<role>_dev_*`."""
    # MLflow's autolog callback sees this evaluation too: the child run gets its result table, and a
    # trace per example when LOG_EVAL_TRACES is on.
    with mlflow.start_run(run_name=f"{role}-dev", nested=True):
        report = evaluate_program(program, devset, settings, settings.eval_threads, label, callbacks=[progress])
        mlflow.log_metrics({f"dev_{name}": value for name, value in report.scores.items()})
        mlflow.log_metrics({"lm_calls": report.lm_calls, "wall_time_s": report.wall_time_s})
        mlflow.log_dict(asdict(report), f"eval/{role}.json")
    mlflow.log_metrics({f"{role}_dev_{name}": value for name, value in report.scores.items()})
    mlflow.log_metric(f"{role}_dev_errors", report.other_errors)
    if report.examples and report.other_errors == report.examples:
        raise LMUnavailable(f"every dev example failed while evaluating the {role}; is the LM still up?")
    return report


# --8<-- [end:evaluate]


# --8<-- [start:check-lm]
def check_lm(settings: Settings) -> None:
    """One tiny LM call before anything is spent: an unreachable LM fails the job with a clear reason."""
    probe = build_lm(settings.model_copy(update={"lm_num_retries": 0, "lm_cache": False}))
    try:
        with dspy.context(callbacks=[]):  # a probe is not worth an MLflow trace
            probe("Reply with OK.", max_tokens=4)
    except Exception as exc:  # any failure here means the same thing to the user: no LM
        raise LMUnavailable(
            f"the LM {settings.lm_model} at {settings.lm_api_base or 'its default endpoint'} did not answer: "
            f"{type(exc).__name__}: {str(exc)[:300]}"
        ) from exc


# --8<-- [end:check-lm]


def _outcome_from_version(version: Any) -> dict[str, Any]:
    tags = version.tags
    candidate = float(tags.get(contracts.VERSION_TAG_DEV_SCORE, "nan"))
    champion = float(tags.get(contracts.VERSION_TAG_CHAMPION_DEV_SCORE, "nan"))
    return {
        "scores": {"candidate_dev": candidate, "champion_dev": champion},
        "decision": "promoted",
        "decision_reason": decide(candidate, champion, 0.0)[1] + " (registered by an earlier attempt)",
        "registered_version": str(version.version),
        "mlflow_run_id": version.run_id,
    }
