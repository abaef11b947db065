"""qa_core.web's health and metrics routes: one readiness shape for every service, Prometheus text."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram

from qa_core.web.health import CheckResult, ReadinessCheck, health_router
from qa_core.web.metrics import metrics_router
from qa_core.web.security import API_CSP
from qa_core.web.stack import add_kit_middleware


def check(ok: bool, detail: str = "", **info: object):
    async def run() -> CheckResult:
        return CheckResult(ok, detail, info)

    return run


def ready(*checks: ReadinessCheck):
    app = FastAPI()
    app.include_router(health_router(checks))
    return TestClient(app).get("/health/ready")


def test_live_checks_nothing_but_the_process() -> None:
    app = FastAPI()
    app.include_router(health_router([ReadinessCheck("database", check(False, "down"))]))
    response = TestClient(app).get("/health/live")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_ready_is_200_with_every_check_named_and_what_it_adds() -> None:
    response = ready(
        ReadinessCheck("database", check(True, "answers")),
        ReadinessCheck("program", check(True, "champion 3", champion="3")),
    )
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {
            "database": {"ok": True, "required": True, "detail": "answers"},
            "program": {"ok": True, "required": True, "detail": "champion 3", "champion": "3"},
        },
    }


def test_a_failed_optional_check_degrades_but_stays_ready() -> None:
    response = ready(
        ReadinessCheck("program", check(True)),
        ReadinessCheck("registry", check(False, "registry: connection refused"), required=False),
    )
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["checks"]["registry"] == {
        "ok": False,
        "required": False,
        "detail": "registry: connection refused",
    }


@pytest.mark.parametrize("optional_ok", [True, False])
def test_a_failed_required_check_is_a_503_not_ready(optional_ok: bool) -> None:
    response = ready(
        ReadinessCheck("database", check(False, "unavailable: connection refused")),
        ReadinessCheck("mlflow", check(optional_ok), required=False),
    )
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"
    assert response.json()["checks"]["database"]["detail"] == "unavailable: connection refused"


def test_metrics_are_prometheus_text_from_the_given_registry_and_count_requests_by_route() -> None:
    registry = CollectorRegistry()
    requests = Counter("demo_requests", "Requests.", ["route", "status"], registry=registry)
    latency = Histogram("demo_request_seconds", "Latency.", ["route"], registry=registry)
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    app.include_router(metrics_router(registry))
    add_kit_middleware(app, csp=API_CSP, request_metrics=(requests, latency))
    client = TestClient(app)
    client.get("/items/1")
    client.get("/items/2")
    client.get("/items/x")
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'demo_requests_total{route="/items/{item_id}",status="200"} 2.0' in text
    assert 'demo_requests_total{route="/items/{item_id}",status="422"} 1.0' in text
    assert 'demo_requests_total{route="unmatched",status="404"} 1.0' in text
    assert 'demo_request_seconds_count{route="/items/{item_id}"} 3.0' in text
