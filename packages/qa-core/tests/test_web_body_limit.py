"""qa_core.web's body limit: 413 in the common envelope, whether the client declared the size or not."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from qa_core.web.handlers import install_error_handlers
from qa_core.web.security import API_CSP
from qa_core.web.stack import add_kit_middleware

LIMIT = 1024


@pytest.fixture
def received() -> list[int]:
    return []


@pytest.fixture
def client(received: list[int]) -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        body = await request.body()
        received.append(len(body))
        return {"bytes": len(body)}

    add_kit_middleware(app, csp=API_CSP, max_body_bytes=LIMIT)
    return TestClient(app)


def chunks(total: int, size: int = 256) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"x" * min(size, total - start)


def test_a_declared_body_over_the_limit_is_refused_before_the_app_reads_it(client, received) -> None:
    response = client.post("/echo", content=b"x" * (LIMIT + 1), headers={"X-Request-Id": "big-1"})
    assert response.status_code == 413
    assert response.json() == {
        "error": {"code": "payload_too_large", "message": f"Body over {LIMIT} bytes.", "request_id": "big-1"}
    }
    assert response.headers["X-Request-Id"] == "big-1"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert received == []


def test_a_chunked_body_over_the_limit_is_refused_as_it_arrives(client, received) -> None:
    response = client.post("/echo", content=chunks(LIMIT * 4))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert response.json()["error"]["request_id"] == response.headers["X-Request-Id"]
    assert received == []


def test_bodies_up_to_the_limit_pass_declared_or_not(client, received) -> None:
    declared = client.post("/echo", content=b"x" * LIMIT)
    chunked = client.post("/echo", content=chunks(LIMIT))
    assert (declared.status_code, chunked.status_code) == (200, 200)
    assert received == [LIMIT, LIMIT]
