"""The pages in headless Chromium (Debian's, driven by Playwright) against real processes.

The stack, started once for the module: the MLflow server, the LM simulator, qa-api with the registry on
(champion and challenger registered), the optimizer-worker's jobs API and a worker, and feedback-ui,
each as its own process on its own port, with PostgreSQL and Redis. Each test checks what the page says
after every step, and what landed in MLflow; screenshots go to test-artifacts/feedback-ui/.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import pytest
from mlflow.tracing.client import TracingClient
from playwright.sync_api import Browser, Page, expect, sync_playwright

from qa_core import contracts, registry
from qa_core.settings import CoreSettings
from tests.support import databases, processes
from tests.support.programs import register_program

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ARTIFACTS = Path(__file__).parents[3] / "test-artifacts" / "feedback-ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
QUESTION = "Which port does the MLflow tracking server listen on?"


@dataclass
class Stack:
    ui: str
    qa: str
    mlflow: str
    model: str
    experiment: str
    champion: str
    challenger: str
    browser: Browser
    passwords: dict[str, str]
    robot: dict[str, str]  # Authorization header of an annotator API token

    def traces(self) -> TracingClient:
        return TracingClient(self.mlflow)

    def assessments(self, trace_id: str, name: str) -> list:
        info = self.traces().get_trace_info(trace_id)
        return [a for a in info.assessments or [] if a.name == name and a.valid is not False]

    def wait_for(self, check, timeout_s: float = 30, what: str = "condition"):  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout_s
        while not (value := check()):
            assert time.monotonic() < deadline, f"{what} not met within {timeout_s} s"
            time.sleep(0.25)
        return value

    @contextlib.contextmanager
    def page_as(self, username: str) -> Iterator[Page]:
        context = self.browser.new_context(viewport={"width": 1200, "height": 900}, base_url=self.ui)
        page = context.new_page()
        try:
            page.goto("/login")
            page.get_by_label("User name").fill(username)
            page.get_by_label("Password").fill(self.passwords[username])
            page.get_by_role("button", name="Log in").click()
            expect(page.get_by_role("heading", name="Ask a question")).to_be_visible()
            yield page
        finally:
            context.close()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def stack(
    postgres_server_url, redis_url, mlflow_server, simulator_base, users_env, passwords, robot_headers
) -> Iterator[Stack]:
    uid = uuid.uuid4().hex[:8]
    model, experiment = f"qa-ui-{uid}", f"qa-ui-traces-{uid}"
    client = registry.configure_mlflow(CoreSettings(_env_file=None, mlflow_tracking_uri=mlflow_server.url))
    champion, challenger = register_program(client, model, 2), register_program(client, model, 1)
    client.set_registered_model_alias(model, contracts.CHAMPION_ALIAS, champion)
    client.set_registered_model_alias(model, contracts.CHALLENGER_ALIAS, challenger)
    shared = {"MLFLOW_TRACKING_URI": mlflow_server.url, "REGISTERED_MODEL_NAME": model,
              "MLFLOW_EXPERIMENT_NAME": experiment, "LM_MODEL": "openai/lm-simulator",
              "LM_API_BASE": simulator_base, "LM_API_KEY": "sim"}  # fmt: skip
    worker_env = {**shared, "APP_ENV": "test", "BROKER_URL": redis_url, "QUEUE_NAME": f"jobs-{uid}",
                  "OPTIMIZATION_EXPERIMENT_NAME": f"qa-ui-optimization-{uid}", "PROMOTION_MARGIN": "1",
                  "EVAL_THREADS": "1", "OPTIMIZER_THREADS": "1"}  # fmt: skip
    with (
        databases.fresh_database(postgres_server_url) as ui_db,
        databases.fresh_database(postgres_server_url) as jobs_db,
        processes.together(
            processes.qa_api({**shared, "REGISTRY_POLL_S": "0.5"}),
            processes.optimizer_worker_api({**worker_env, "DATABASE_URL": jobs_db}),
            processes.optimizer_worker({**worker_env, "DATABASE_URL": jobs_db}),
        ) as (qa, jobs_api, _),
        processes.feedback_ui(
            {
                **shared,
                **users_env,
                "APP_ENV": "test",
                "DATABASE_URL": ui_db,
                "QA_API_URL": qa.url,
                "WORKER_API_URL": jobs_api.url,
                "OUTBOX_POLL_S": "0.2",
                "OUTBOX_BACKOFF_BASE_S": "0.2",
                "OUTBOX_BACKOFF_MAX_S": "2",
            }
        ) as ui,  # fmt: skip
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield Stack(
                ui.url,
                qa.url,
                mlflow_server.url,
                model,
                experiment,
                champion,
                challenger,
                browser,
                passwords,
                robot_headers,
            )
        finally:
            browser.close()


# --8<-- [start:ask-test]
def test_an_annotator_asks_rates_and_corrects(stack: Stack) -> None:
    with stack.page_as("ann") as page:
        shot(page, "01-ask")
        page.get_by_label("Question").fill(QUESTION)
        page.get_by_role("button", name="Ask").click()
        answer = page.locator("article.answer")
        expect(answer.get_by_role("heading", name="Answer")).to_be_visible()
        expect(answer.locator(".citations")).to_contain_text("Cited passages")
        trace_id = answer.get_attribute("data-trace-id")
        assert (trace_id or "").startswith("tr-")
        page.get_by_label("Corrected answer").fill("Port 5000, unless --port says otherwise.")
        page.get_by_label("Reason").fill("It should name the default port.")
        shot(page, "02-ask-answer")
        page.get_by_role("button", name="✗ Wrong").click()
        expect(page.locator(".saved")).to_contain_text("Saved: ✗ wrong, with your correction.")
        expect(answer.locator(".answer-text")).to_be_visible()  # the answer stays on the page
        shot(page, "03-ask-rated")

        # A second question, rated with the keyboard.
        page.get_by_label("Question").fill("What does the champion alias point at?")
        page.get_by_role("button", name="Ask").click()
        second = page.locator("article.answer")
        expect(second.locator("form.rate")).to_be_visible()
        assert second.get_attribute("data-trace-id") != trace_id
        page.locator("body").press("u")
        expect(page.locator(".saved")).to_contain_text("Saved: ✓ good")

    ratings = stack.wait_for(lambda: stack.assessments(trace_id, contracts.ASSESSMENT_USER_RATING), what="rating")
    assert [(r.value, r.rationale, r.source.source_id) for r in ratings] == [
        (False, "It should name the default port.", "ann")
    ]
    [correction] = stack.wait_for(lambda: stack.assessments(trace_id, contracts.ASSESSMENT_CORRECTED_ANSWER))
    assert correction.value == "Port 5000, unless --port says otherwise."


# --8<-- [end:ask-test]


def test_the_review_queue_has_api_traffic_but_not_load_tests(stack: Stack) -> None:
    asked = {}
    for question, headers in (
        ("Review me: what is a registered model?", {}),
        ("Review me too: what is an alias?", {}),
        ("Load test: ignore me", {contracts.HEADER_SYNTHETIC: "1"}),
    ):
        response = httpx.post(f"{stack.qa}/v1/answer", json={"question": question},
                              headers={contracts.HEADER_FORCE_TRACE: "1", **headers}, timeout=30)  # fmt: skip
        assert response.status_code == 200, response.text
        asked[question] = response.json()["trace_id"]
    mlflow.set_tracking_uri(stack.mlflow)
    stack.wait_for(lambda: all(_exported(stack, t) for t in asked.values()), what="traces exported")

    seen = []
    with stack.page_as("ann") as page:
        page.get_by_role("link", name="Review").click()
        expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
        shot(page, "04-review")
        for _ in range(15):  # rate the first, skip the rest, until the queue is empty
            item = page.locator("#review")
            if item.get_by_text("Nothing to review").is_visible():
                break
            question = item.locator("h2.question").inner_text()
            seen.append(question)
            page.locator("body").press("u" if len(seen) == 1 else "s")
            expect(item.locator(".message").first).to_be_visible()
            expect(item).not_to_contain_text(question)  # the next one, or none left
        expect(page.locator("#review")).to_contain_text("Nothing to review")
    assert "Review me: what is a registered model?" in seen
    assert "Review me too: what is an alias?" in seen
    assert "Load test: ignore me" not in seen
    assert seen[0] == "Review me too: what is an alias?"  # newest first
    rated = stack.wait_for(lambda: stack.assessments(asked[seen[0]], contracts.ASSESSMENT_USER_RATING))
    assert [(r.value, r.source.source_id) for r in rated] == [(True, "ann")]


def _exported(stack: Stack, trace_id: str) -> bool:
    try:
        return stack.traces().get_trace_info(trace_id) is not None
    except mlflow.exceptions.MlflowException:
        return False


def test_compare_shows_both_versions_blind_and_stores_the_preference(stack: Stack) -> None:
    with stack.page_as("ann") as page:
        page.get_by_role("link", name="Compare").click()
        page.get_by_label("Question").fill(QUESTION)
        page.get_by_role("button", name="Get both answers").click()
        expect(page.locator("#answer-a")).to_be_visible()
        expect(page.locator("#answer-b")).to_be_visible()
        expect(page.locator("#compare")).not_to_contain_text("champion")  # hidden until the choice
        shot(page, "05-compare")
        page.locator("body").press("a")
        expect(page.locator("#compare .message")).to_contain_text("Saved: A is better.")
        reveal = page.locator("#answer-a .reveal").inner_text()
        shot(page, "06-compare-saved")
    winner_variant = reveal.split(" · ")[0]
    assert winner_variant in ("champion", "challenger")
    # Both traces carry the verdict: the winner a "win", the other a "loss", each naming its opponent.
    mlflow.set_tracking_uri(stack.mlflow)
    found = stack.wait_for(lambda: _pairwise(stack), what="pairwise assessments")
    assert sorted(a.value for a in found.values()) == ["loss", "win"]
    by_variant = {trace.info.tags[contracts.TRACE_TAG_VARIANT]: found[trace.info.trace_id].value
                  for trace in (stack.traces().get_trace(t) for t in found)}  # fmt: skip
    assert by_variant[winner_variant] == "win"


def _pairwise(stack: Stack) -> dict | None:
    experiment = mlflow.get_experiment_by_name(stack.experiment)
    traces = mlflow.search_traces(locations=[experiment.experiment_id], include_spans=False, return_type="list")
    found = {
        t.info.trace_id: a for t in traces for a in t.info.assessments or [] if a.name == contracts.ASSESSMENT_PAIRWISE
    }
    return found if len(found) == 2 else None


# --8<-- [start:experiment-test]
def test_an_admin_changes_the_share_promotes_and_rolls_back(stack: Stack) -> None:
    client = registry.configure_mlflow(CoreSettings(_env_file=None, mlflow_tracking_uri=stack.mlflow))
    with stack.page_as("ada") as page:
        page.get_by_role("link", name="Experiment").click()
        expect(page.locator(".champion-version")).to_have_text(f"version {stack.champion}")
        expect(page.locator(".challenger-version")).to_have_text(f"version {stack.challenger}")
        expect(page.locator(".verdict")).to_contain_text("P(challenger is better) =")
        expect(page.locator("figure.chart svg")).to_be_visible()
        before = _counts(page)
        # One answer from each variant, rated through the JSON API: champion good, challenger wrong.
        for variant, rating in ((contracts.CHAMPION_ALIAS, "up"), (contracts.CHALLENGER_ALIAS, "down")):
            answer = httpx.post(f"{stack.qa}/v1/answer", json={"question": QUESTION}, timeout=30, headers={
                contracts.HEADER_FORCE_TRACE: "1", contracts.HEADER_FORCE_VARIANT: variant}).json()  # fmt: skip
            stack.wait_for(lambda a=answer: _exported(stack, a["trace_id"]), what="trace exported")
            response = httpx.post(f"{stack.ui}/api/feedback", headers=stack.robot, timeout=30, json={
                "trace_id": answer["trace_id"], "rating": rating, "idempotency_key": uuid.uuid4().hex})  # fmt: skip
            assert response.status_code == 202, response.text
        page.reload()
        after = _counts(page)
        assert after["champion"] == (before["champion"][0] + 1, before["champion"][1] + 1)
        assert after["challenger"] == (before["challenger"][0] + 1, before["challenger"][1])
        expect(page.locator(".guardrails")).to_contain_text("p95 latency")
        shot(page, "07-experiment")

        page.get_by_label("Challenger's share (%)").fill("50")
        page.get_by_role("button", name="Change share…").click()
        expect(page.locator(".confirm")).to_contain_text("to 50% of sessions")
        shot(page, "08-confirm-share")
        page.get_by_role("button", name="Yes, set the share to 50%").click()
        expect(page.locator("#messages")).to_contain_text("The challenger's share is now 50%")
        expect(page.locator(".share")).to_have_text("50%")
        stack.wait_for(lambda: _serving(stack)["challenger_share"] == 0.5, what="qa-api applies the share")

        page.get_by_role("button", name=f"Promote version {stack.challenger}…").click()
        expect(page.locator(".confirm")).to_contain_text(f"Promote version {stack.challenger} to champion?")
        shot(page, "09-confirm-promote")
        page.get_by_role("button", name=f"Yes, promote version {stack.challenger}").click()
        expect(page.locator("#messages")).to_contain_text(f"Version {stack.challenger} is now the champion.")
        expect(page.locator(".champion-version")).to_have_text(f"version {stack.challenger}")
        expect(page.locator(".challenger-version")).to_have_text("none")
        assert registry.version_for_alias(client, stack.model, contracts.CHAMPION_ALIAS).version == stack.challenger
        stack.wait_for(lambda: _serving(stack)["champion"] == stack.challenger, what="qa-api serves the new champion")

        page.get_by_role("button", name=f"Roll back to version {stack.champion}…").click()
        page.get_by_role("button", name=f"Yes, roll back to version {stack.champion}").click()
        expect(page.locator("#messages")).to_contain_text(f"Rolled back: version {stack.champion} is the champion")
        expect(page.locator(".champion-version")).to_have_text(f"version {stack.champion}")
        audit = page.locator("table.audit tbody tr .action")
        expect(audit).to_have_text(["roll_back", "promote", "set_share"])
        shot(page, "10-experiment-after-roll-back")
    assert registry.version_for_alias(client, stack.model, contracts.CHAMPION_ALIAS).version == stack.champion
    stack.wait_for(lambda: _serving(stack)["champion"] == stack.champion, what="qa-api serves the old champion")


# --8<-- [end:experiment-test]


def _counts(page: Page) -> dict[str, tuple[int, int]]:
    """Per variant: (rated answers, rated good), read off the results table."""
    counts = {}
    for variant in contracts.VARIANTS:
        row = page.locator(f".results tr.variant-{variant}")
        rated = int(row.locator(".rated").inner_text())
        counts[variant] = (rated, int(row.locator(".rated").get_attribute("data-good")))
    return counts


def _serving(stack: Stack) -> dict:
    return httpx.get(f"{stack.qa}/health/ready", timeout=10).json()["checks"]["program"]


def test_an_admin_starts_an_optimization_and_watches_it_finish(stack: Stack) -> None:
    with stack.page_as("ada") as page:
        page.get_by_role("link", name="Jobs").click()
        page.get_by_label("Optimizer").select_option("bootstrap_fewshot")
        page.get_by_label("Budget").fill("1")
        page.get_by_label("Train limit").fill("4")
        page.get_by_label("Dev limit").fill("4")
        page.get_by_role("button", name="Start optimization").click()
        expect(page.locator("#messages")).to_contain_text("queued: bootstrap_fewshot, budget 1")
        row = page.locator("tr.job").first
        shot(page, "11-jobs-started")
        # The row polls itself every 2 s (htmx) until the job is done; no reload here.
        expect(row.locator(".state")).to_have_text("succeeded", timeout=240_000)
        expect(row.locator(".decision")).to_contain_text("not promoted")
        run_link = re.compile(rf"^{re.escape(stack.mlflow)}/#/experiments/\d+/runs/[0-9a-f]+$")
        expect(row.get_by_role("link", name="MLflow run")).to_have_attribute("href", run_link)
        shot(page, "12-jobs-finished")
