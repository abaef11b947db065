"""One factory per optimizer: the DSPy teleprompter, its compile arguments, and what it will roughly cost.

The defaults finish in minutes on SmolLM2-135M with 2 cores. `budget` is each optimizer's main knob;
`settings.budget_ranges` bounds it, so a typo cannot start a day-long job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy

from optimizer_worker.errors import BudgetOutOfRange, DatasetUnavailable, OptimizationFailed
from optimizer_worker.finetune.provider import check_can_finetune
from optimizer_worker.settings import BUDGET_MEANING, Settings
from qa_core import contracts
from qa_core.adapters import JSONAdapter
from qa_core.labels import LabelledTeacher
from qa_core.lm import LOCAL_PROVIDER, register_local_provider
from qa_core.metrics import DEMO_THRESHOLD, combined_metric, feedback_metric
from qa_core.program import GroundedQA


@dataclass
class Plan:
    """What `pipeline` runs: `optimizer.compile(student, **compile_kwargs)`."""

    optimizer: Any
    compile_kwargs: dict[str, Any]
    expected_lm_calls: int  # a rough upper bound, for the progress bar
    params: dict[str, Any] = field(default_factory=dict)  # logged to the MLflow run
    # Weight optimizers need the student's predictors to carry an LM whose provider can fine-tune.
    tunes_weights: bool = False


# Optimizers that train the model's weights, and so need the local model and the LM server's adapters folder.
TUNES_WEIGHTS: frozenset[contracts.OptimizerName] = frozenset({"bootstrap_finetune", "better_together"})


# --8<-- [start:validate-budget]
def validate_budget(settings: Settings, optimizer: contracts.OptimizerName, budget: int) -> None:
    if optimizer in TUNES_WEIGHTS:
        check_can_finetune(settings)
    low, high = settings.budget_ranges[optimizer]
    if not low <= budget <= high:
        raise BudgetOutOfRange(
            f"budget for {optimizer} ({BUDGET_MEANING[optimizer]}) must be between {low} and {high}, got {budget}"
        )


# --8<-- [end:validate-budget]


def _split(trainset: list[dspy.Example], size: int) -> list[dspy.Example]:
    """The candidates' scoring set: a slice of the training set (dev stays untouched for the decision)."""
    return trainset[: min(size, len(trainset))]


# --8<-- [start:factories]
def bootstrap_fewshot(s: Settings, budget: int, train: list[dspy.Example], teacher: dspy.Module) -> Plan:
    # Traces from the champion (it already has demos) pass the metric far more often than a bare program's.
    optimizer = dspy.BootstrapFewShot(
        metric=combined_metric,
        metric_threshold=DEMO_THRESHOLD,
        max_bootstrapped_demos=budget,
        max_labeled_demos=s.max_labeled_demos,
        max_rounds=1,
    )
    calls = len(train) * s.grounding_attempts
    return Plan(optimizer, {"trainset": train, "teacher": teacher}, calls, {"max_bootstrapped_demos": budget})


def bootstrap_random_search(s: Settings, budget: int, train: list[dspy.Example], teacher: dspy.Module) -> Plan:
    valset = _split(train, s.valset_size)
    optimizer = dspy.BootstrapFewShotWithRandomSearch(
        metric=combined_metric,
        metric_threshold=DEMO_THRESHOLD,
        max_bootstrapped_demos=s.random_search_demos,
        max_labeled_demos=s.max_labeled_demos,
        num_candidate_programs=budget,
        num_threads=s.optimizer_threads,
    )
    calls = (budget + 3) * (len(train) + len(valset)) * s.grounding_attempts
    kwargs = {"trainset": train, "valset": valset, "teacher": teacher}
    return Plan(optimizer, kwargs, calls, {"num_candidate_programs": budget, "valset_size": len(valset)})


def miprov2(s: Settings, budget: int, train: list[dspy.Example], teacher: dspy.Module) -> Plan:
    valset = _split(train, s.valset_size)
    optimizer = dspy.MIPROv2(
        metric=combined_metric,
        auto="light",
        max_bootstrapped_demos=budget,
        max_labeled_demos=s.max_labeled_demos,
        num_threads=s.optimizer_threads,
        metric_threshold=DEMO_THRESHOLD,
        verbose=False,
    )
    kwargs = {
        "trainset": train,
        "valset": valset,
        "teacher": teacher,
        "minibatch_size": min(len(valset), 35),
        "view_data_batch_size": min(10, len(train)),
    }
    calls = 6 * len(train) + 20 + 12 * len(valset) * s.grounding_attempts
    return Plan(optimizer, kwargs, calls, {"auto": "light", "max_bootstrapped_demos": budget})


def gepa(s: Settings, budget: int, train: list[dspy.Example], teacher: dspy.Module) -> Plan:
    optimizer = dspy.GEPA(
        metric=feedback_metric,
        max_metric_calls=budget,
        reflection_lm=reflection_lm(s),
        reflection_minibatch_size=min(3, len(train)),
        num_threads=s.optimizer_threads,
        track_stats=False,
        seed=0,
    )
    valset = _split(train, s.valset_size)
    calls = budget * s.grounding_attempts + budget // 3
    return Plan(optimizer, {"trainset": train, "valset": valset}, calls, {"max_metric_calls": budget})


def simba(s: Settings, budget: int, train: list[dspy.Example], teacher: dspy.Module) -> Plan:
    batch = min(s.simba_batch_size, len(train))
    optimizer = dspy.SIMBA(
        metric=combined_metric,
        bsize=batch,
        num_candidates=s.simba_candidates,
        max_steps=budget,
        max_demos=max(1, s.max_labeled_demos),
        num_threads=s.optimizer_threads,
    )
    # Each step runs its mini-batch through the candidates and writes rules; then SIMBA scores the
    # baseline and every step's winner on the whole training set, which dominates the cost.
    steps = budget * batch * (s.simba_candidates + 1) * s.grounding_attempts + budget * s.simba_candidates
    calls = steps + (budget + 1) * len(train) * s.grounding_attempts
    params = {"max_steps": budget, "bsize": batch, "num_candidates": s.simba_candidates}
    return Plan(optimizer, {"trainset": train, "seed": 0}, calls, params)


# --8<-- [start:weight-factories]
def bootstrap_finetune(s: Settings, budget: int, train: list[dspy.Example], teacher: dspy.Module) -> Plan:
    """LoRA on the labelled traces; the tuned model answers without demos (they would cost prompt tokens)."""
    optimizer = lora_finetune(budget)
    kwargs = {"trainset": train, "teacher": labelled_teacher(teacher, train)}
    return Plan(optimizer, kwargs, 0, {"max_examples": budget}, tunes_weights=True)


def better_together(s: Settings, budget: int, train: list[dspy.Example], teacher: dspy.Module) -> Plan:
    """Prompt, weights, prompt again (`p -> w -> p`); the best step on a held-out slice of train wins."""
    held_out = min(s.valset_size, len(train) // 2)
    trainset, valset = train[: len(train) - held_out], train[len(train) - held_out :]
    labelled = labelled_teacher(teacher, trainset)
    prompts = dspy.BootstrapFewShot(
        metric=combined_metric,
        metric_threshold=DEMO_THRESHOLD,
        max_bootstrapped_demos=s.max_labeled_demos,
        max_labeled_demos=0,
        max_rounds=1,
    )
    weights = lora_finetune(budget)
    optimizer = dspy.BetterTogether(metric=combined_metric, p=prompts, w=weights)
    kwargs = {
        "trainset": trainset,
        "valset": valset,
        "strategy": "p -> w -> p",
        "seed": 0,
        "num_threads": s.optimizer_threads,
        # BetterTogether hands its `teacher` to every step as a list; each step gets the labelled one.
        "optimizer_compile_args": {"p": {"teacher": labelled}, "w": {"teacher": labelled}},
    }
    calls = 4 * len(valset) * s.grounding_attempts
    params = {"strategy": "p -> w -> p", "max_examples": budget, "valset_size": len(valset)}
    return Plan(optimizer, kwargs, calls, params, tunes_weights=True)


def lora_finetune(budget: int) -> dspy.BootstrapFinetune:
    """BootstrapFinetune on at most `budget` conversations, in the served JSON format, without demos."""
    return dspy.BootstrapFinetune(
        metric=combined_metric,
        adapter=JSONAdapter(),
        exclude_demos=True,  # the tuned model answers without them: they would only cost prompt tokens
        num_threads=1,
        train_kwargs={"max_examples": budget},  # the LoRA provider's TrainBudget.max_examples
    )


def labelled_teacher(program: dspy.Module, examples: list[dspy.Example]) -> LabelledTeacher:
    """The champion's retriever, answering the training questions with their labels."""
    assert isinstance(program, GroundedQA)
    return LabelledTeacher(program.index, examples, k=program.k)


# --8<-- [end:weight-factories]


FACTORIES: dict[contracts.OptimizerName, Callable[[Settings, int, list[dspy.Example], dspy.Module], Plan]] = {
    "bootstrap_fewshot": bootstrap_fewshot,
    "bootstrap_random_search": bootstrap_random_search,
    "miprov2": miprov2,
    "gepa": gepa,
    "simba": simba,
    "bootstrap_finetune": bootstrap_finetune,
    "better_together": better_together,
}
# Fewest training examples each optimizer can work with.
MIN_TRAIN: dict[contracts.OptimizerName, int] = {
    "bootstrap_fewshot": 1,
    "bootstrap_random_search": 2,
    "miprov2": 2,
    "gepa": 2,
    "simba": 2,
    "bootstrap_finetune": 2,
    "better_together": 4,  # half of it is held out to choose the best step
}
# --8<-- [end:factories]


# --8<-- [start:compile-plan]
def compile_plan(plan: Plan, student: dspy.Module) -> dspy.Module:
    """`plan.optimizer.compile(student, ...)`, plus what DSPy's optimizers leave undone.

    Prompt optimizers start from `reset_copy()`, which drops each predictor's LM: a fine-tuned
    champion's prompt-optimized candidate must answer with the champion's adapter, not the base
    model. BetterTogether returns its best program so far when a step fails; a job must not
    register that as if the whole strategy had run.
    """
    lms = [predictor.lm for predictor in student.predictors()]
    candidate = plan.optimizer.compile(student, **plan.compile_kwargs)
    if getattr(candidate, "flag_compilation_error_occurred", False):
        raise OptimizationFailed("a BetterTogether step failed (the worker log has the traceback)")
    if not plan.tunes_weights:
        for predictor, lm in zip(candidate.predictors(), lms, strict=True):
            predictor.lm = predictor.lm or lm
    return candidate


# --8<-- [end:compile-plan]


def plan(
    settings: Settings, optimizer: contracts.OptimizerName, budget: int, train: list[dspy.Example], teacher: dspy.Module
) -> Plan:
    validate_budget(settings, optimizer, budget)
    needed = max(MIN_TRAIN[optimizer], settings.min_train_examples)
    if len(train) < needed:
        raise DatasetUnavailable(f"{optimizer} needs at least {needed} training examples; the job has {len(train)}")
    return FACTORIES[optimizer](settings, budget, train, teacher)


def reflection_lm(settings: Settings) -> dspy.LM:
    """GEPA's reflection LM: a stronger model in production; the task LM by default."""
    key = settings.gepa_reflection_lm_api_key or settings.lm_api_key
    assert key is not None
    model = settings.gepa_reflection_lm_model or settings.lm_model
    if model.startswith(f"{LOCAL_PROVIDER}/"):
        register_local_provider()
    return dspy.LM(
        model,
        api_base=(settings.gepa_reflection_lm_api_base or settings.lm_api_base) or None,
        api_key=key.get_secret_value(),
        temperature=1.0,
        max_tokens=settings.gepa_reflection_max_tokens,
        timeout=settings.lm_timeout_s,
        num_retries=settings.lm_num_retries,
    )
