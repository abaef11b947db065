"""qa_core.web's exception handlers: every failure answers in the one envelope, with one set of codes."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field
from sqlalchemy.exc import OperationalError

from qa_core.web.errors import ServiceError
from qa_core.web.handlers import install_error_handlers
from qa_core.web.security import API_CSP
from qa_core.web.stack import add_kit_middleware


class Busy(ServiceError):
    status, code = 429, "busy"


class Question(BaseModel):
    question: str = Field(min_length=1)


def build_app(**install: object) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app, **install)  # type: ignore[arg-type]

    @app.post("/ask")
    async def ask(body: Question, limit: Annotated[int, Query(ge=1)] = 1) -> dict[str, str]:
        return {"question": body.question}

    @app.get("/busy")
    async def busy() -> None:
        raise Busy("Too busy right now.", 7, field="question")

    @app.get("/teapot")
    async def teapot() -> None:
        raise HTTPException(418, "short and stout")

    @app.get("/database")
    async def database() -> None:
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))

    @app.get("/crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    add_kit_middleware(app, csp=API_CSP)
    return app


@pytest.fixture
def client() -> TestClient:
    return TestClient(build_app(), raise_server_exceptions=False)


def test_a_service_error_has_its_status_code_message_extra_fields_and_retry_after(client: TestClient) -> None:
    response = client.get("/busy", headers={"X-Request-Id": "req-1"})
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json() == {
        "error": {"code": "busy", "message": "Too busy right now.", "request_id": "req-1", "field": "question"}
    }


def test_a_validation_error_is_invalid_request_with_one_entry_per_field(client: TestClient) -> None:
    response = client.post("/ask?limit=0", json={"question": ""}, headers={"X-Request-Id": "req-2"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["request_id"]) == ("invalid_request", "req-2")
    assert sorted(f["field"] for f in error["fields"]) == ["limit", "question"]  # not body.question, query.limit
    assert all(f["message"] for f in error["fields"])
    assert error["message"] == "; ".join(f"{f['field']}: {f['message']}" for f in error["fields"])


def test_a_body_that_is_not_json_is_invalid_request_for_the_body(client: TestClient) -> None:
    response = client.post("/ask", content=b'{"question": ', headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


def test_http_errors_keep_their_status_and_headers_with_an_http_code(client: TestClient) -> None:
    teapot = client.get("/teapot")
    missing = client.get("/nowhere")
    wrong_method = client.delete("/ask")
    assert (teapot.status_code, teapot.json()["error"]["code"]) == (418, "http_418")
    assert teapot.json()["error"]["message"] == "short and stout"
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "http_404")
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "http_405")
    assert wrong_method.headers["allow"] == "POST"


def test_a_database_that_is_down_is_a_503_not_a_500(client: TestClient) -> None:
    response = client.get("/database")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_an_unexpected_error_is_a_500_that_still_carries_the_request_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = client.get("/crash", headers={"X-Request-Id": "req-3"})
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal",
        "message": "Internal error; it was logged with the request id.",
        "request_id": "req-3",
    }
    assert response.headers["X-Request-Id"] == "req-3"
    assert "unhandled error in request req-3" in caplog.text


def test_a_respond_hook_renders_every_error_with_the_kits_codes() -> None:
    """feedback-ui's hook: people get a page; the code and status are still the kit's."""

    def page(request: Request, error: ServiceError) -> Response:
        return HTMLResponse(f"<p>{error.code}: {error.message}</p>", status_code=error.status)

    client = TestClient(build_app(respond=page, database_message="Nothing was saved."), raise_server_exceptions=False)
    pages = {path: client.get(path) for path in ("/busy", "/teapot", "/database", "/crash")}
    pages["/ask"] = client.post("/ask", json={})
    assert {path: (r.status_code, r.text.split(":")[0]) for path, r in pages.items()} == {
        "/busy": (429, "<p>busy"),
        "/teapot": (418, "<p>http_418"),
        "/database": (503, "<p>database_unavailable"),
        "/crash": (500, "<p>internal"),
        "/ask": (422, "<p>invalid_request"),
    }
    assert "Nothing was saved." in pages["/database"].text
    assert all(r.headers["content-type"].startswith("text/html") for r in pages.values())
