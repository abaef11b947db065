from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from qa_api.main import create_app
from qa_api.settings import Settings


def app_settings(api_base: str, **overrides: Any) -> Settings:
    """qa-api against an LM simulator, no registry, no LM retries (tests count every call)."""
    values: dict[str, Any] = {
        "lm_model": "openai/lm-simulator",
        "lm_api_base": api_base,
        "lm_api_key": "sim",
        "lm_num_retries": 0,
        "use_registry": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running, and a client that talks to it in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://qa-api", timeout=60) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
def qa_client(simulator_base: str) -> Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """`async with qa_client(max_inflight=2) as client:` — an app on the shared simulator."""

    def make(api_base: str | None = None, **overrides: Any) -> contextlib.AbstractAsyncContextManager:
        return running_app(app_settings(api_base or simulator_base, **overrides))

    return make
