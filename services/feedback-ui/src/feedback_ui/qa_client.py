"""qa-api as feedback-ui calls it: async, traced, with the user's session id for sticky assignment."""

from __future__ import annotations

import uuid

import httpx

from feedback_ui.errors import QaApiError, UpstreamUnavailable
from qa_core import contracts
from qa_core.contracts import AnswerResponse, Variant


class QaClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, timeout_s: float) -> None:
        self.http, self.base_url, self.timeout_s = http, base_url.rstrip("/"), timeout_s

    # --8<-- [start:ask]
    async def ask(self, question: str, session_id: str, variant: Variant | None = None) -> AnswerResponse:
        """One answer, always traced (a person is about to rate it), optionally from a forced variant."""
        headers = {
            contracts.HEADER_SESSION_ID: session_id,
            contracts.HEADER_FORCE_TRACE: "1",
            contracts.HEADER_REQUEST_ID: f"fui-{uuid.uuid4().hex}",
        }
        if variant is not None:
            headers[contracts.HEADER_FORCE_VARIANT] = variant
        body = contracts.AnswerRequest(question=question, session_id=session_id).model_dump()
        try:
            response = await self.http.post(
                f"{self.base_url}/v1/answer", json=body, headers=headers, timeout=self.timeout_s
            )
        except httpx.TimeoutException as error:
            raise UpstreamUnavailable(f"qa-api did not answer within {self.timeout_s:g} s.") from error
        except httpx.TransportError as error:
            raise UpstreamUnavailable(f"qa-api cannot be reached at {self.base_url}.") from error
        if response.status_code != 200:
            raise _error(response)
        return AnswerResponse.model_validate(response.json())

    # --8<-- [end:ask]


def _error(response: httpx.Response) -> QaApiError:
    """qa-api's own error code and message, so the page can say exactly what went wrong."""
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:200] or response.reason_phrase
    retry_after = response.headers.get("Retry-After")
    status = response.status_code if response.status_code < 500 else 502
    return QaApiError(f"qa-api: {message}", status, code, int(retry_after) if retry_after else None)
