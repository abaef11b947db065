"""The pattern from DSPy's deployment tutorial: a sync program wrapped with `dspy.asyncify`.

asyncify runs the program in a thread pool of `async_max_workers` threads (4 here, the tutorial's
value), so at most four questions are in flight, whatever the load: throughput is capped near
4 / LM latency.

    uvicorn loadtests.baselines.tutorial_app:app --port 8011
"""

from __future__ import annotations

import dspy
from fastapi import FastAPI
from pydantic import BaseModel

from qa_core.lm import configure_dspy
from qa_core.program import build_program
from qa_core.settings import CoreSettings

settings = CoreSettings()
configure_dspy(settings)
# --8<-- [start:tutorial]
dspy.settings.configure(async_max_workers=4)
program = dspy.asyncify(build_program(settings))
# --8<-- [end:tutorial]
app = FastAPI()


class Question(BaseModel):
    question: str


@app.post("/v1/answer")
async def answer(body: Question) -> dict:
    prediction = await program(question=body.question)
    return {"answer": prediction.answer, "citations": prediction.citations}
