"""The JSON API and the forms at their edge: validation, idempotency, roles, CSRF, login limits, delivery.

Real PostgreSQL, a real MLflow server; the app runs in this process with its outbox loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import http.server
import json
import threading
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, update

from feedback_ui.db import session_scope
from feedback_ui.feedback import FeedbackService, TraceFacts
from feedback_ui.models import Answer, Feedback, OutboxItem
from feedback_ui.outbox import Claimed, deliver_trace, record
from feedback_ui.traces import TraceStore
from qa_core import contracts, registry
from qa_core.settings import CoreSettings
from tests.support.metrics import has_samples, metric_value
from tests.support.processes import free_port
from tests.support.programs import register_program

pytestmark = pytest.mark.slow


def rows(deployment, model) -> int:
    with session_scope(deployment.settings.database_url) as session:
        return session.scalar(select(func.count()).select_from(model))


def key() -> str:
    return uuid.uuid4().hex


# --8<-- [start:validation-test]
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trace_id": "12345"}, "trace_id"),
        ({"trace_id": "tr-" + "Z" * 32}, "trace_id"),
        ({"rating": "maybe"}, "rating"),
        ({"idempotency_key": "short"}, "idempotency_key"),
        ({"idempotency_key": None}, "idempotency_key"),
        ({"correction": "x" * 4001}, "correction"),
        ({"reason": ["not", "text"]}, "reason"),
    ],
)
def test_a_bad_field_is_a_422_that_names_it_and_stores_nothing(deployment, change, field) -> None:
    body = {"trace_id": "tr-" + "a" * 32, "rating": "up", "idempotency_key": key(), **change}
    with deployment.app() as client:
        response = client.post("/api/feedback", json=body, headers=deployment.bearer())
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(f"{field}:")
    assert [f["field"] for f in error["fields"]] == [field]
    assert error["request_id"]
    assert rows(deployment, Feedback) == 0
    assert rows(deployment, OutboxItem) == 0


# --8<-- [end:validation-test]


def test_a_rating_sent_before_its_trace_lands_waits_for_it(deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    """qa-api exports a trace a moment after the answer; a client that rates at once must not get a 404."""
    trace_id = deployment.trace()
    looked_up = []
    real_info = TraceStore.info

    def not_there_yet(self: TraceStore, wanted: str):  # the first three lookups come before the export
        looked_up.append(wanted)
        return None if len(looked_up) <= 3 else real_info(self, wanted)

    monkeypatch.setattr(TraceStore, "info", not_there_yet)
    body = {"trace_id": trace_id, "rating": "up", "idempotency_key": key()}
    with deployment.app() as client:
        waited = client.post("/api/feedback", json=body, headers=deployment.bearer())
    with deployment.app(TRACE_LOOKUP_WAIT_S="0") as client:
        looked_up.clear()
        refused = client.post("/api/feedback", json={**body, "idempotency_key": key()}, headers=deployment.bearer())
    assert waited.status_code == 202, waited.text
    assert refused.status_code == 404  # with no wait, the first miss is the answer
    assert looked_up == [trace_id]


def test_a_well_formed_trace_id_that_mlflow_does_not_know_is_a_404(deployment) -> None:
    body = {"trace_id": "tr-" + uuid.uuid4().hex, "rating": "down", "idempotency_key": key()}
    with deployment.app() as client:
        response = client.post("/api/feedback", json=body, headers=deployment.bearer())
        preference = client.post(
            "/api/preferences",
            json={
                "trace_id_a": deployment.trace(),
                "trace_id_b": body["trace_id"],
                "preferred": "a",
                "idempotency_key": key(),
            },
            headers=deployment.bearer(),
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "trace_not_found"
    assert response.json()["error"]["field"] == "trace_id"
    assert preference.status_code == 404
    assert preference.json()["error"]["field"] == "trace_id_b"
    assert rows(deployment, Feedback) == 0
    assert rows(deployment, OutboxItem) == 0


def test_a_preference_needs_two_different_answers_from_two_versions(deployment) -> None:
    one, other = deployment.trace(version="1"), deployment.trace(version="1")
    with deployment.app() as client:
        same = client.post(
            "/api/preferences",
            json={"trace_id_a": one, "trace_id_b": one, "preferred": "tie", "idempotency_key": key()},
            headers=deployment.bearer(),
        )
        same_version = client.post(
            "/api/preferences",
            json={"trace_id_a": one, "trace_id_b": other, "preferred": "a", "idempotency_key": key()},
            headers=deployment.bearer(),
        )
    assert same.status_code == 422
    assert same.json()["error"]["message"].startswith("trace_id_b: Value error, must differ from trace_id_a")
    assert same_version.status_code == 422
    assert "both answers come from program version 1" in same_version.json()["error"]["message"]


# --8<-- [start:idempotency-test]
def test_the_same_idempotency_key_stores_once_and_a_reused_key_is_a_409(deployment) -> None:
    trace_id = deployment.trace()
    body = {"trace_id": trace_id, "rating": "up", "reason": "matches the docs", "idempotency_key": key()}
    with deployment.app() as client:
        counted_before = deployment.ratings_counted(client)
        first = client.post("/api/feedback", json=body, headers=deployment.bearer())
        again = client.post("/api/feedback", json=body, headers=deployment.bearer())
        reused = client.post("/api/feedback", json={**body, "rating": "down"}, headers=deployment.bearer())
        deployment.delivered(client, first.json()["id"], deployment.bearer())
        counted = deployment.ratings_counted(client) - counted_before
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "idempotency_conflict"
    assert rows(deployment, Feedback) == 1
    assert counted == 1  # the metric the challenger alert reads counts the rating once, too
    ratings = deployment.assessments(trace_id, contracts.ASSESSMENT_USER_RATING)
    assert [(a.value, a.rationale, a.source.source_type, a.source.source_id) for a in ratings] == [
        (True, "matches the docs", "HUMAN", "robot")
    ]


# --8<-- [end:idempotency-test]


def test_posts_racing_with_one_new_key_store_once_and_all_answer_with_its_id(deployment, monkeypatch) -> None:
    """A client retrying in a hurry: every post passes the replay check before any has committed, so the
    database's unique key decides, and the losers answer as replays instead of failing."""
    racers = 4
    all_checked = asyncio.Barrier(racers)
    resolve_trace = FeedbackService.resolve_trace

    async def resolve_then_wait_for_the_others(self: FeedbackService, trace_id: str, field: str) -> TraceFacts:
        facts = await resolve_trace(self, trace_id, field)
        await asyncio.wait_for(all_checked.wait(), timeout=30)
        return facts

    monkeypatch.setattr(FeedbackService, "resolve_trace", resolve_then_wait_for_the_others)
    body = {"trace_id": deployment.trace(), "rating": "up", "idempotency_key": key()}
    with deployment.app() as client, concurrent.futures.ThreadPoolExecutor(racers) as pool:
        racing = list(
            pool.map(lambda _: client.post("/api/feedback", json=body, headers=deployment.bearer()), range(racers))
        )
    assert sorted(r.status_code for r in racing) == [200] * (racers - 1) + [202]
    assert len({r.json()["id"] for r in racing}) == 1
    assert rows(deployment, Feedback) == 1


def test_a_rating_with_a_correction_lands_as_feedback_and_expectation_and_a_new_rating_overrides(deployment) -> None:
    trace_id = deployment.trace(question="What does the champion alias mean?", answer="a dog")
    with deployment.app() as client:
        csrf = deployment.login(client, "ann")
        first = client.post(
            "/api/feedback",
            headers={"X-CSRF-Token": csrf},
            json={
                "trace_id": trace_id,
                "rating": "down",
                "correction": "The version that serves most traffic.",
                "reason": "not about dogs",
                "idempotency_key": key(),
            },
        )
        view = deployment.delivered(client, first.json()["id"])
        changed = client.post(
            "/api/feedback",
            headers={"X-CSRF-Token": csrf},
            json={"trace_id": trace_id, "rating": "up", "idempotency_key": key()},
        )
        deployment.delivered(client, changed.json()["id"])
    assert first.status_code == 202
    assert [d["name"] for d in view["deliveries"]] == [
        contracts.ASSESSMENT_USER_RATING,
        contracts.ASSESSMENT_CORRECTED_ANSWER,
    ]
    assert view["variant"] == "champion"
    assert view["model_version"] == "1"
    corrections = deployment.assessments(trace_id, contracts.ASSESSMENT_CORRECTED_ANSWER)
    assert [(c.value, c.source.source_id) for c in corrections] == [("The version that serves most traffic.", "ann")]
    # The person changed their mind: one valid rating of theirs remains, the new one; the old one is overridden.
    valid = deployment.assessments(trace_id, contracts.ASSESSMENT_USER_RATING)
    every = deployment.assessments(trace_id, contracts.ASSESSMENT_USER_RATING, valid_only=False)
    assert [(a.value, a.source.source_id) for a in valid] == [(True, "ann")]
    assert len(every) == 2
    assert valid[0].overrides == next(a.assessment_id for a in every if a.value is False)


def test_a_pairwise_preference_lands_on_both_traces(deployment) -> None:
    champion = deployment.trace(version="1", variant="champion")
    challenger = deployment.trace(version="2", variant="challenger")
    with deployment.app() as client:
        response = client.post(
            "/api/preferences",
            headers=deployment.bearer(),
            json={
                "trace_id_a": champion,
                "trace_id_b": challenger,
                "preferred": "b",
                "reason": "cites the source",
                "idempotency_key": key(),
            },
        )
        deployment.wait_until(
            lambda: (
                client.get(f"/api/preferences/{response.json()['id']}", headers=deployment.bearer()).json()["status"]
                == "delivered"
            ),
            what="preference delivery",
        )
    assert response.status_code == 202
    for trace_id, outcome, opponent in ((champion, "loss", challenger), (challenger, "win", champion)):
        [assessment] = deployment.assessments(trace_id, contracts.ASSESSMENT_PAIRWISE)
        assert assessment.value == outcome
        assert assessment.metadata["opponent_trace_id"] == opponent
        assert assessment.source.source_id == "robot"


# --8<-- [start:roles-test]
def test_anonymous_users_cannot_write_and_annotators_cannot_promote(deployment) -> None:
    client_mlflow = registry.configure_mlflow(
        CoreSettings(_env_file=None, mlflow_tracking_uri=deployment.env["MLFLOW_TRACKING_URI"])
    )
    model = deployment.env["REGISTERED_MODEL_NAME"]
    champion, challenger = register_program(client_mlflow, model, 2), register_program(client_mlflow, model, 1)
    client_mlflow.set_registered_model_alias(model, contracts.CHAMPION_ALIAS, champion)
    client_mlflow.set_registered_model_alias(model, contracts.CHALLENGER_ALIAS, challenger)
    trace_id = deployment.trace()
    with deployment.app() as client:
        anonymous = client.post("/api/feedback", json={"trace_id": trace_id, "rating": "up", "idempotency_key": key()})
        anonymous_form = client.post(
            "/feedback", data={"trace_id": trace_id, "rating": "up", "idempotency_key": key()}, follow_redirects=False
        )
        bad_token = client.post(
            "/api/feedback",
            headers={"Authorization": "Bearer not-a-token"},
            json={"trace_id": trace_id, "rating": "up", "idempotency_key": key()},
        )
        csrf = deployment.login(client, "ann")
        promote = client.post(
            "/experiment/promote", data={"expected_challenger": challenger, "csrf_token": csrf}, follow_redirects=False
        )
        share = client.post("/experiment/share", data={"share_percent": "90", "csrf_token": csrf})
        confirm = client.get("/experiment/confirm/promote")
        job = client.post(
            "/jobs", data={"optimizer": "simba", "budget": "1", "idempotency_key": key(), "csrf_token": csrf}
        )
        page = client.get("/experiment")
    assert (anonymous.status_code, anonymous.json()["error"]["code"]) == (401, "not_authenticated")
    assert anonymous_form.status_code == 401
    assert bad_token.status_code == 401
    assert promote.status_code == 403
    assert "needs the admin role" in promote.text
    assert share.status_code == 403
    assert confirm.status_code == 403
    assert job.status_code == 403
    assert "Promote version" not in page.text  # the controls are not even shown
    assert rows(deployment, Feedback) == 0
    assert registry.version_for_alias(client_mlflow, model, contracts.CHAMPION_ALIAS).version == champion
    assert client_mlflow.get_registered_model(model).tags.get(contracts.TAG_CHALLENGER_SHARE) is None


# --8<-- [end:roles-test]


# --8<-- [start:csrf-test]
def test_a_missing_or_wrong_csrf_token_is_rejected(deployment) -> None:
    trace_id = deployment.trace()
    body = {"trace_id": trace_id, "rating": "up", "idempotency_key": key()}
    with deployment.app() as client:
        no_token_login = client.post("/login", data={"username": "ann", "password": "ann-annotator-password"})
        csrf = deployment.login(client, "ann")
        missing = client.post("/api/feedback", json=body)
        wrong = client.post("/api/feedback", json=body, headers={"X-CSRF-Token": csrf[:-2] + "xx"})
        wrong_form = client.post("/feedback", data={**body, "csrf_token": "forged"})
        missing_form = client.post("/feedback", data=body)
        logout = client.post("/logout", data={}, follow_redirects=False)
        right = client.post("/api/feedback", json=body, headers={"X-CSRF-Token": csrf})
    assert no_token_login.status_code == 403
    for response in (missing, wrong, wrong_form, missing_form, logout):
        assert response.status_code == 403
        assert "security token is missing or wrong" in response.text
    assert missing.json()["error"]["code"] == "csrf_failed"
    assert right.status_code == 202
    assert rows(deployment, Feedback) == 1


# --8<-- [end:csrf-test]


def test_logins_are_rate_limited_and_cookies_are_hardened(deployment) -> None:
    with deployment.app() as client:
        page = client.get("/login")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        attempts = [
            client.post("/login", data={"username": "ada", "password": f"guess-{i}", "csrf_token": csrf})
            for i in range(deployment.settings.login_max_failures)
        ]
        blocked = client.post("/login", data={"username": "ada", "password": "ada-admin-password", "csrf_token": csrf})
    assert [a.status_code for a in attempts] == [401] * len(attempts)
    assert "Wrong user name or password" in attempts[0].text
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) == deployment.settings.login_window_s
    cookie = page.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


# --8<-- [start:crash-window-test]
def test_an_assessment_logged_before_a_crash_is_not_logged_twice(deployment) -> None:
    """The window the outbox cannot close with a transaction: MLflow has the assessment, our row does not
    say so (the process died in between). The next attempt must find it, not log a second one."""
    trace_id = deployment.trace()
    settings = deployment.settings
    store = TraceStore(settings.mlflow_tracking_uri, settings.mlflow_experiment_name)
    # The app's own outbox cannot reach MLflow here (wrong address); this test drives delivery by hand.
    with deployment.app(MLFLOW_TRACKING_URI="http://127.0.0.1:9") as client:
        response = client.post(
            "/api/feedback",
            headers=deployment.bearer(),
            json={"trace_id": trace_id, "rating": "up", "idempotency_key": key()},
        )
    assert response.status_code == 202
    with session_scope(settings.database_url) as session:
        [item] = session.scalars(select(OutboxItem)).all()
        session.expunge(item)
    first, _ = deliver_trace(store, Claimed(trace_id, [item]))  # logged; then "crash": the row stays pending
    assert first[0].assessment_id
    assert not first[0].found_existing
    with session_scope(settings.database_url) as session:
        assert session.get(OutboxItem, item.id).status == "pending"
    retry, info = deliver_trace(store, Claimed(trace_id, [item]))
    with session_scope(settings.database_url) as session:
        record(session, retry, [info], settings, __import__("random").Random(0))
        session.execute(update(OutboxItem).values(claimed_until=None))
        stored = session.get(OutboxItem, item.id)
        assert (stored.status, stored.assessment_id) == ("delivered", first[0].assessment_id)
    assert retry[0].found_existing
    assert len(deployment.assessments(trace_id, contracts.ASSESSMENT_USER_RATING, valid_only=False)) == 1


# --8<-- [end:crash-window-test]


def test_health_reports_the_outbox_and_metrics_are_prometheus_text(deployment) -> None:
    with deployment.app() as client:
        ready = client.get("/health/ready")
        live = client.get("/health/live")
        metrics = client.get("/metrics")
        annotator_outbox = client.get("/api/outbox", headers=deployment.bearer())
        docs = client.get("/api/docs")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["outbox"]["pending"] == 0
    assert live.json() == {"status": "ok"}
    assert has_samples(metrics.text, "feedback_outbox_items")
    assert metric_value(metrics.text, "feedback_outbox_items", status="pending") == 0
    assert annotator_outbox.status_code == 403
    assert "https://cdn.jsdelivr.net" in docs.headers["content-security-policy"]  # Swagger UI's assets load


def test_an_unreachable_database_is_a_503_not_a_500(deployment, users_env) -> None:
    with deployment.app(DATABASE_URL="postgresql://nobody@127.0.0.1:1/feedback") as client:
        response = client.post(
            "/api/feedback",
            headers=deployment.bearer(),
            json={"trace_id": "tr-" + "b" * 32, "rating": "up", "idempotency_key": key()},
        )
        ready = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "nothing was saved" in response.json()["error"]["message"]
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"]["ok"] is False


@contextlib.contextmanager
def stub_qa_api(seen: list[dict[str, str]]) -> Iterator[str]:
    """A qa-api that records the headers of each question and answers with the request id it was given."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append({key.lower(): value for key, value in self.headers.items()})
            body = json.dumps({
                "answer": "5000", "citations": [], "variant": "champion", "model_version": "1",
                "trace_id": "tr-" + uuid.uuid4().hex, "request_id": self.headers.get("X-Request-Id", "minted"),
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_pages_request_id_goes_on_to_qa_api_and_is_kept_with_the_answer(deployment) -> None:
    seen: list[dict[str, str]] = []
    longest = "r" * 128  # the longest id any service accepts; the answers table keeps all of it
    with stub_qa_api(seen) as qa_url, deployment.app(QA_API_URL=qa_url) as client:
        csrf = deployment.login(client, "ann")
        page = client.post(
            "/ask", data={"question": "Which port?", "csrf_token": csrf}, headers={"X-Request-Id": longest}
        )
        minted = client.post("/ask", data={"question": "Which port?", "csrf_token": csrf})
    assert (page.status_code, minted.status_code) == (200, 200)
    assert [headers["x-request-id"] for headers in seen] == [longest, minted.headers["X-Request-Id"]]
    with session_scope(deployment.settings.database_url) as session:
        stored = set(session.scalars(select(Answer.request_id)))
    assert stored == {longest, minted.headers["X-Request-Id"]}
