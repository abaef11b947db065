"""The optimizer-worker's jobs API, as the Jobs page uses it. Shapes come from qa_core.contracts."""

from __future__ import annotations

import httpx

from feedback_ui.errors import UpstreamUnavailable, WorkerApiError
from qa_core.contracts import JobCreate, JobList, JobView


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
            try:
                error = response.json()["error"]
                code, message = str(error["code"]), str(error["message"])
            except (ValueError, KeyError, TypeError):
                code, message = f"http_{response.status_code}", response.text[:200]
            status = response.status_code if response.status_code < 500 else 502
            raise WorkerApiError(f"jobs API: {message}", status, code)
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
