"""The floor: the same program behind FastAPI with nothing but `await program.acall(...)`.

No tracing, metrics, routing, limits or error mapping. qa-api's production features are measured
against this app: their cost is the gap between the two.

    uvicorn loadtests.baselines.minimal_app:app --port 8010
"""

from __future__ import annotations

import dspy
from fastapi import FastAPI
from pydantic import BaseModel

from qa_core.lm import configure_dspy
from qa_core.program import build_program
from qa_core.settings import CoreSettings

settings = CoreSettings()
configure_dspy(settings)  # once, at import, in the main thread
program = build_program(settings)
app = FastAPI()


class Question(BaseModel):
    question: str


# --8<-- [start:minimal]
@app.post("/v1/answer")
async def answer(body: Question) -> dict:
    prediction: dspy.Prediction = await program.acall(question=body.question)
    return {"answer": prediction.answer, "citations": prediction.citations}


# --8<-- [end:minimal]
