"""qa-api as feedback-ui calls it: async, traced, with the user's session id for sticky assignment.

The page's request id goes along (the app's HTTP client passes it on), so one id finds both services' logs.
"""

from __future__ import annotations

import httpx

from qa_core import contracts
from qa_core.contracts import AnswerResponse, Variant
from qa_core.web.errors import UpstreamUnavailable
from qa_core.web.upstream import relayed_error


class QaClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str, timeout_s: float) -> None:
        self.http, self.base_url, self.timeout_s = http, base_url.rstrip("/"), timeout_s

    # --8<-- [start:ask]
    async def ask(self, question: str, session_id: str, variant: Variant | None = None) -> AnswerResponse:
        """One answer, always traced (a person is about to rate it), optionally from a forced variant."""
        headers = {
            contracts.HEADER_SESSION_ID: session_id,
            contracts.HEADER_FORCE_TRACE: "1",
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
            raise relayed_error("qa-api", response)  # qa-api's own code and message: the page says what went wrong
        return AnswerResponse.model_validate(response.json())

    # --8<-- [end:ask]
