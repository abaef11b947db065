"""Side-by-side: one question, answered by the champion and by the challenger, in a random order.

Which side is which stays on the server (the Comparison row), so the person judging cannot be swayed by
the label; the verdict is stored as a pairwise preference between the two traces.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass
from typing import Literal

from feedback_ui.answers import from_response, remember
from feedback_ui.db import Database
from feedback_ui.feedback import FeedbackService, PreferenceIn, Submitted
from feedback_ui.models import Answer, Comparison
from feedback_ui.qa_client import QaClient
from qa_core import contracts
from qa_core.web.errors import NotFound


@dataclass(frozen=True)
class SideBySide:
    comparison_id: str
    question: str
    left: Answer
    right: Answer


# --8<-- [start:start]
async def start(qa: QaClient, db: Database, user_id: str, question: str, session_id: str,
                rng: random.Random | None = None) -> SideBySide:  # fmt: skip
    champion, challenger = await asyncio.gather(
        qa.ask(question, session_id, contracts.CHAMPION_ALIAS), qa.ask(question, session_id, contracts.CHALLENGER_ALIAS)
    )
    answers = [from_response(r, question, session_id, "compare") for r in (champion, challenger)]
    (rng or random.SystemRandom()).shuffle(answers)
    left, right = answers
    comparison = Comparison(id=str(uuid.uuid4()), user_id=user_id, question=question,
                            left_trace_id=left.trace_id, right_trace_id=right.trace_id)  # fmt: skip

    def store(session) -> None:  # type: ignore[no-untyped-def]
        for answer in answers:
            remember(session, answer)
        session.add(comparison)

    await db.run(store)
    return SideBySide(comparison.id, question, left, right)


# --8<-- [end:start]


async def decide(
    feedback: FeedbackService, db: Database, user_id: str, comparison_id: str,
    choice: Literal["left", "right", "tie"], reason: str | None, idempotency_key: str,
) -> Submitted:  # fmt: skip
    comparison = await db.run(lambda s: s.get(Comparison, comparison_id))
    if comparison is None or comparison.user_id != user_id:
        raise NotFound("This comparison does not exist or is not yours; start a new one.", field="comparison_id")
    body = PreferenceIn(
        trace_id_a=comparison.left_trace_id, trace_id_b=comparison.right_trace_id,
        preferred={"left": "a", "right": "b", "tie": "tie"}[choice], reason=reason, idempotency_key=idempotency_key,
    )  # fmt: skip
    submitted = await feedback.submit_preference(user_id, body)

    def link(session) -> None:  # type: ignore[no-untyped-def]
        row = session.get(Comparison, comparison_id)
        row.preference_id = submitted.view.id

    await db.run(link)
    return submitted


async def load(db: Database, user_id: str, comparison_id: str) -> SideBySide:
    def read(session) -> SideBySide:  # type: ignore[no-untyped-def]
        comparison = session.get(Comparison, comparison_id)
        if comparison is None or comparison.user_id != user_id:
            raise NotFound("This comparison does not exist or is not yours.", field="comparison_id")
        return SideBySide(comparison.id, comparison.question, session.get(Answer, comparison.left_trace_id),
                          session.get(Answer, comparison.right_trace_id))  # fmt: skip

    return await db.run(read)
