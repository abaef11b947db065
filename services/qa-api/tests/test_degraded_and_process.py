"""qa-api when MLflow goes away, and qa-api as a real process: OpenTelemetry and graceful shutdown."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import httpx
import mlflow
import pytest

from qa_core import contracts, registry
from qa_core.settings import CoreSettings
from tests.support import processes
from tests.support.programs import register_program
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

QUESTION = {"question": "Which port does the MLflow tracking server listen on?"}


async def ready(api) -> dict:
    return (await api.get("/health/ready")).json()


# --8<-- [start:degraded-test]
async def test_mlflow_going_down_never_stops_serving_and_the_service_recovers(qa_client, tmp_path) -> None:
    with processes.mlflow_server(str(tmp_path)) as server:
        client = registry.configure_mlflow(CoreSettings(_env_file=None, mlflow_tracking_uri=server.url))
        name = f"qa-program-{uuid.uuid4().hex[:8]}"
        version = register_program(client, name, 2)
        client.set_registered_model_alias(name, contracts.CHAMPION_ALIAS, version)
        settings = {
            "use_registry": True,
            "mlflow_tracking_uri": server.url,
            "registered_model_name": name,
            "registry_poll_s": 0.3,
            "mlflow_timeout_s": 1.0,
        }
        async with qa_client(**settings) as api:
            assert (await ready(api))["checks"]["program"]["champion"] == version

            server.stop()
            await eventually(lambda: _degraded(api, True))
            answers = [await api.post("/v1/answer", json=QUESTION) for _ in range(5)]
            assert [r.status_code for r in answers] == [200] * 5
            assert {r.json()["model_version"] for r in answers} == {version}
            state = await ready(api)
            assert state["status"] == "degraded"
            assert state["checks"]["registry"]["detail"].startswith("registry:")

            server.start()
            await eventually(lambda: _degraded(api, False))
            assert (await api.post("/v1/answer", json=QUESTION)).status_code == 200


# --8<-- [end:degraded-test]


async def _degraded(api, expected: bool) -> bool:
    return (await ready(api))["checks"]["registry"]["ok"] is not expected


async def test_an_unreachable_registry_at_start_serves_the_baseline_as_degraded(qa_client) -> None:
    settings = {
        "use_registry": True,
        "mlflow_tracking_uri": f"http://127.0.0.1:{processes.free_port()}",
        "registry_startup_timeout_s": 2.0,
        "mlflow_timeout_s": 1.0,
    }
    async with qa_client(**settings) as api:
        state = await ready(api)
        answer = await api.post("/v1/answer", json=QUESTION)
    assert (state["status"], state["checks"]["program"]["source"]) == ("degraded", "baseline")
    assert answer.status_code == 200
    assert answer.json()["model_version"] == contracts.BASELINE_VERSION
    assert answer.json()["trace_id"] is None


class OTLPCollector(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and remembers which paths were posted to."""

    received: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        OTLPCollector.received.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_otel_http_spans_are_exported_and_mlflow_still_gets_its_trace(simulator_base, mlflow_server) -> None:
    collector = HTTPServer(("127.0.0.1", 0), OTLPCollector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    env = {
        "LM_MODEL": "openai/lm-simulator",
        "LM_API_BASE": simulator_base,
        "LM_API_KEY": "sim",
        "MLFLOW_TRACKING_URI": mlflow_server.url,
        "MLFLOW_EXPERIMENT_NAME": f"otel-{uuid.uuid4().hex[:6]}",
        "REGISTERED_MODEL_NAME": f"otel-{uuid.uuid4().hex[:6]}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_port}",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    try:
        with processes.qa_api(env) as api:
            body = httpx.post(f"{api.url}/v1/answer", json=QUESTION, timeout=30).json()
            deadline = time.monotonic() + 20
            while "/v1/traces" not in OTLPCollector.received and time.monotonic() < deadline:
                time.sleep(0.2)
    finally:
        collector.shutdown()
    assert "/v1/traces" in OTLPCollector.received  # HTTP spans went to the collector
    mlflow.set_tracking_uri(mlflow_server.url)
    trace = mlflow.get_trace(body["trace_id"], flush=True)
    assert trace is not None  # and the MLflow trace was not diverted there
    assert trace.info.tags[contracts.TRACE_TAG_REQUEST_ID] == body["request_id"]


def test_shutdown_lets_in_flight_requests_finish(tmp_path) -> None:
    with processes.lm_simulator(latency_ms=2000) as slow:
        env = {"LM_MODEL": "openai/lm-simulator", "LM_API_BASE": slow, "LM_API_KEY": "sim", "USE_REGISTRY": "false"}
        with processes.qa_api(env) as api:
            result: dict = {}

            def ask() -> None:
                result["response"] = httpx.post(f"{api.url}/v1/answer", json=QUESTION, timeout=30)

            asking = threading.Thread(target=ask)
            asking.start()
            time.sleep(0.7)  # the request is now waiting on the LM
            api.stop(signal.SIGTERM)
            asking.join(timeout=30)
            log = api.logs()
    assert result["response"].status_code == 200, log
    assert json.loads(result["response"].text)["answer"]
