"""qa_core.web's request id: one rule, echoed, in scope state, and passed on to the services a request calls."""

from __future__ import annotations

import httpx
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from qa_core.web.request_context import current_request_id
from qa_core.web.security import API_CSP
from qa_core.web.stack import add_kit_middleware
from qa_core.web.upstream import propagate_request_id


def build_app(upstream_seen: list[httpx.Request]) -> FastAPI:
    """An app whose route calls an upstream service, as feedback-ui calls qa-api."""

    def record(request: httpx.Request) -> httpx.Response:
        upstream_seen.append(request)
        return httpx.Response(200, json={})

    app = FastAPI()

    @app.get("/id")
    async def show_id(request: Request) -> dict[str, str | None]:
        return {"state": request.state.request_id, "context": current_request_id.get()}

    @app.get("/calls")
    async def calls() -> dict[str, str]:
        hooks = {"request": [propagate_request_id]}
        async with httpx.AsyncClient(transport=httpx.MockTransport(record), event_hooks=hooks) as http:
            await http.get("http://upstream/plain")
            await http.get("http://upstream/own", headers={"X-Request-Id": "chosen-by-the-caller"})
        return {}

    add_kit_middleware(app, csp=API_CSP)
    return app


def test_a_safe_caller_id_is_kept_echoed_and_visible_to_the_route() -> None:
    client = TestClient(build_app([]))
    response = client.get("/id", headers={"X-Request-Id": "trace:abc-1.2_3"})
    assert response.headers["X-Request-Id"] == "trace:abc-1.2_3"
    assert response.json() == {"state": "trace:abc-1.2_3", "context": "trace:abc-1.2_3"}


def test_an_unsafe_or_missing_id_is_replaced_by_a_fresh_one() -> None:
    client = TestClient(build_app([]))
    sent = ["bad id\twith tabs", "x" * 129, 'quote"s', ""]
    responses = [client.get("/id", headers={"X-Request-Id": value}) for value in sent] + [client.get("/id")]
    echoed = [r.headers["X-Request-Id"] for r in responses]
    assert not set(echoed) & set(sent)
    assert len(set(echoed)) == len(echoed)
    assert [r.json()["state"] for r in responses] == echoed
    assert client.get("/id", headers={"X-Request-Id": "y" * 128}).headers["X-Request-Id"] == "y" * 128


def test_the_id_goes_on_to_outgoing_calls_unless_the_call_names_its_own() -> None:
    seen: list[httpx.Request] = []
    client = TestClient(build_app(seen))
    client.get("/calls", headers={"X-Request-Id": "req-42"})
    minted = client.get("/calls").headers["X-Request-Id"]
    assert [r.headers["X-Request-Id"] for r in seen] == [
        "req-42",
        "chosen-by-the-caller",
        minted,
        "chosen-by-the-caller",
    ]


async def test_outside_a_request_no_id_is_sent() -> None:
    seen: list[httpx.Request] = []
    transport = httpx.MockTransport(lambda request: seen.append(request) or httpx.Response(200))
    async with httpx.AsyncClient(transport=transport, event_hooks={"request": [propagate_request_id]}) as http:
        await http.get("http://upstream/")
    assert "X-Request-Id" not in seen[0].headers
    assert current_request_id.get() is None
