"""Locust users for qa-api: single answers, streams and batches.

Every request carries `X-Synthetic: 1`, so qa-api tags its traces as load and neither dashboards of
real traffic nor the feedback UI's review queue count them.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from locust import FastHttpUser, between, task

from qa_core.contracts import HEADER_SESSION_ID, HEADER_SYNTHETIC

DEV_SPLIT = Path(__file__).parents[1] / "packages/qa-core/src/qa_core/data/qa/dev.jsonl"
QUESTIONS = [json.loads(line)["question"] for line in DEV_SPLIT.read_text().splitlines() if line.strip()]


class QAUser(FastHttpUser):
    """Shared set-up: a session id per simulated user, so A/B assignment is sticky as for people."""

    abstract = True
    wait_time = between(0.0, 0.1)

    def on_start(self) -> None:
        self.headers = {HEADER_SYNTHETIC: "1", HEADER_SESSION_ID: f"locust-{random.getrandbits(48):x}"}


# --8<-- [start:users]
class AnswerUser(QAUser):
    weight = 6

    @task
    def answer(self) -> None:
        self.client.post(
            "/v1/answer", json={"question": random.choice(QUESTIONS)}, headers=self.headers, name="/v1/answer"
        )


class StreamUser(QAUser):
    weight = 3

    @task
    def stream(self) -> None:
        with self.client.post(
            "/v1/answer/stream",
            json={"question": random.choice(QUESTIONS)},
            headers=self.headers,
            name="/v1/answer/stream",
            catch_response=True,
        ) as response:
            if response.status_code == 200 and "event: final" not in response.text:
                response.failure("stream ended without a final event")


class BatchUser(QAUser):
    weight = 1

    @task
    def batch(self) -> None:
        questions = random.sample(QUESTIONS, 4)
        with self.client.post(
            "/v1/answer/batch",
            json={"questions": questions},
            headers=self.headers,
            name="/v1/answer/batch",
            catch_response=True,
        ) as response:
            if response.status_code == 200 and not all(item["ok"] for item in response.json()["results"]):
                response.failure("a batch item failed")


# --8<-- [end:users]
