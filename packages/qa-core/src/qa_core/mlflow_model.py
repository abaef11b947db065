"""The program as an MLflow DSPy model: what `mlflow models serve` loads and calls.

`GroundedQA` returns `Passage` objects, which MLflow's scoring server cannot write as JSON. This thin
module returns the same prediction with plain values. It lives in qa-core so any process that can
import the program can also unpickle the logged model.
"""

from __future__ import annotations

from dataclasses import asdict

import dspy

from qa_core.program import GroundedQA


# --8<-- [start:served]
class ServedQA(dspy.Module):
    def __init__(self, program: GroundedQA) -> None:
        super().__init__()
        self.program = program

    def forward(self, question: str) -> dspy.Prediction:
        pred = self.program(question=question)
        return dspy.Prediction(
            answer=pred.answer,
            citations=list(pred.citations),
            passages=[asdict(p) for p in pred.passages],
            grounded=pred.grounded,
        )


# --8<-- [end:served]
