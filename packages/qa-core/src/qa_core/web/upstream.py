"""Calling another service of the system: pass the request id on, and relay the error it answers with."""

from __future__ import annotations

import httpx

from qa_core.contracts import HEADER_REQUEST_ID
from qa_core.web.errors import ServiceError
from qa_core.web.request_context import current_request_id


# --8<-- [start:propagate]
async def propagate_request_id(request: httpx.Request) -> None:
    """An httpx request hook: the current request's id goes on every call made while serving it (a call
    that names its own id keeps it). `httpx.AsyncClient(event_hooks={"request": [propagate_request_id]})`."""
    request_id = current_request_id.get()
    if request_id is not None and HEADER_REQUEST_ID not in request.headers:
        request.headers[HEADER_REQUEST_ID] = request_id


# --8<-- [end:propagate]


def relayed_error(service: str, response: httpx.Response) -> ServiceError:
    """The other service's error as ours: its code and message (the envelope every service answers with),
    its status for a 4xx, 502 for its own failure, and its Retry-After."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):  # not our envelope: a proxy's page, or a crash
        code, message = f"http_{response.status_code}", response.text[:200] or response.reason_phrase
    retry_after = response.headers.get("Retry-After")
    return ServiceError(
        f"{service}: {message}",
        int(retry_after) if retry_after and retry_after.isdigit() else None,
        status=response.status_code if response.status_code < 500 else 502,
        code=code,
    )
