"""qa_core.web's security headers: on every response, with the service's CSP and the docs pages' own."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from qa_core.web.handlers import install_error_handlers
from qa_core.web.security import API_CSP, DOCS_CSP
from qa_core.web.stack import add_kit_middleware

UI_CSP = "default-src 'self'; frame-ancestors 'none'"


def build_app(csp: str, **fastapi: object) -> TestClient:
    app = FastAPI(**fastapi)  # type: ignore[arg-type]
    install_error_handlers(app)

    @app.get("/thing")
    async def thing() -> dict[str, str]:
        return {"thing": "yes"}

    add_kit_middleware(app, csp=csp)
    return TestClient(app)


def test_every_response_says_nosniff_no_framing_same_origin_referrer_and_the_services_csp() -> None:
    client = build_app(UI_CSP)
    for response in (client.get("/thing"), client.get("/nowhere")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["content-security-policy"] == UI_CSP


def test_a_json_api_allows_nothing_to_load_or_frame_it() -> None:
    assert "default-src 'none'" in API_CSP
    assert "frame-ancestors 'none'" in API_CSP
    assert build_app(API_CSP).get("/thing").headers["content-security-policy"] == API_CSP


def test_the_openapi_pages_get_the_policy_that_lets_them_load_wherever_they_are() -> None:
    client = build_app(API_CSP, docs_url="/api/docs", redoc_url=None)
    docs = client.get("/api/docs")
    assert docs.status_code == 200
    assert docs.headers["content-security-policy"] == DOCS_CSP
    assert "https://cdn.jsdelivr.net" in DOCS_CSP
    assert client.get("/docs").headers["content-security-policy"] == API_CSP  # not where this app put them
    assert client.get("/openapi.json").headers["content-security-policy"] == API_CSP
