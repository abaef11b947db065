"""The optimizer-worker's jobs API, as the Jobs page uses it. Shapes come from qa_core.contracts."""

from __future__ import annotations

import httpx

from qa_core.contracts import JobCreate, JobList, JobView
from qa_core.web.errors import UpstreamUnavailable
from qa_core.web.upstream import relayed_error


class JobsClient:
    def __init__(self, http: httpx.AsyncClient, base_url: str) -> None:
        self.http, self.base_url = http, base_url.rstrip("/")

    async def _call(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = await self.http.request(method, f"{self.base_url}{path}", timeout=15, **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as error:
            raise UpstreamUnavailable(
                f"The optimizer-worker's jobs API cannot be reached at {self.base_url}."
            ) from error
        if response.status_code >= 400:
            raise relayed_error("jobs API", response)
        return response

    # --8<-- [start:jobs]
    async def create(self, job: JobCreate) -> JobView:
        response = await self._call("POST", "/v1/jobs", json=job.model_dump(mode="json"))
        return JobView.model_validate(response.json())

    async def list(self, limit: int = 20) -> list[JobView]:
        response = await self._call("GET", "/v1/jobs", params={"limit": limit})
        return JobList.model_validate(response.json()).jobs

    async def get(self, job_id: str) -> JobView:
        return JobView.model_validate((await self._call("GET", f"/v1/jobs/{job_id}")).json())

    async def cancel(self, job_id: str) -> JobView:
        return JobView.model_validate((await self._call("POST", f"/v1/jobs/{job_id}/cancel")).json())

    # --8<-- [end:jobs]
